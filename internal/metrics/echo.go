package metrics

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// EchoMiddleware records every request in lockd_http_requests_total and
// lockd_http_request_duration_seconds, labelled by c.Path() (the route
// pattern, e.g. /v1/locks/*, so the label set stays bounded), method and
// status code. A handler's error is handed to echo's error handler here, so
// the code recorded is the one the client got; the error is not passed
// further up the chain (the response is already written). A panic is
// recorded as a 500 and passed on to an outer recover middleware.
func (m *Metrics) EchoMiddleware() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			defer func() {
				if p := recover(); p != nil {
					m.ObserveHTTP(route(c), method(c.Request().Method), http.StatusInternalServerError, time.Since(start))
					panic(p)
				}
			}()
			err := next(c)
			if err != nil {
				c.Error(err)
			}
			code := c.Response().Status
			if err != nil && !c.Response().Committed {
				// The error handler wrote nothing (e.g. HEAD, or a custom handler).
				code = http.StatusInternalServerError
				var he *echo.HTTPError
				if errors.As(err, &he) {
					code = he.Code
				}
			}
			m.ObserveHTTP(route(c), method(c.Request().Method), code, time.Since(start))
			return nil
		}
	}
}

// route is the matched route pattern, "unmatched" for none (404s), so the
// label never holds a raw path.
func route(c echo.Context) string {
	if p := c.Path(); p != "" {
		return p
	}
	return "unmatched"
}

// method bounds the method label to the standard methods.
func method(s string) string {
	switch s {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return s
	}
	return "OTHER"
}

func statusText(code int) string { return strconv.Itoa(code) }

// factory builds collectors under the lockd namespace on one registry.
type factory struct{ reg *prometheus.Registry }

func (f factory) counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help})
	f.reg.MustRegister(c)
	return c
}

func (f factory) counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: name, Help: help}, labels)
	f.reg.MustRegister(c)
	return c
}

func (f factory) gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help})
	f.reg.MustRegister(g)
	return g
}

func (f factory) gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help}, labels)
	f.reg.MustRegister(g)
	return g
}

func (f factory) histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help, Buckets: buckets})
	f.reg.MustRegister(h)
	return h
}

func (f factory) histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: name, Help: help, Buckets: buckets}, labels)
	f.reg.MustRegister(h)
	return h
}
