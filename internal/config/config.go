// Package config is a lockd replica's configuration: a JSON file, overridden
// by LOCKD_* environment variables and then by flags, with defaults from
// Default and every problem reported at once by Validate.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Replica is one member of the cell as every replica's configuration lists it.
type Replica struct {
	// ID is the replica's id, 1..N, unique in the cell.
	ID uint32 `json:"id"`
	// Client is the host:port other replicas and clients reach its HTTP API on.
	Client string `json:"client"`
	// Peer is the host:port of its Paxos transport.
	Peer string `json:"peer"`
	// Gossip is the host:port of its memberlist gossip.
	Gossip string `json:"gossip"`
}

// Config configures one replica.
type Config struct {
	Cell      string    `json:"cell"`
	ID        uint32    `json:"id"`
	DataDir   string    `json:"data_dir"`
	Bootstrap bool      `json:"bootstrap"`
	Replicas  []Replica `json:"replicas"`

	// Bind addresses; empty means this replica's entry in Replicas.
	ClientListen string `json:"client_listen,omitempty"`
	PeerListen   string `json:"peer_listen,omitempty"`
	GossipListen string `json:"gossip_listen,omitempty"`

	TickMs         int    `json:"tick_ms"`
	ElectionTicks  int    `json:"election_ticks"`
	HeartbeatTicks int    `json:"heartbeat_ticks"`
	LeaseTicks     int    `json:"lease_ticks"`
	DriftTicks     int    `json:"drift_ticks"`
	SnapshotEvery  uint64 `json:"snapshot_every"`
	SessionGraceMs int    `json:"session_grace_ms"`

	LogLevel string `json:"log_level"`
	LogJSON  bool   `json:"log_json"`
	Pprof    bool   `json:"pprof"`

	// Auth: bearer tokens, bootstrap ACLs and per-principal limits
	// (security.go). Empty runs open, which only loopback addresses allow.
	Auth Auth `json:"auth,omitzero"`
	// TLS: certificate files for the client API and mutual TLS between
	// replicas. Nil: plaintext (loopback only, unless auth.disabled).
	TLS *TLS `json:"tls,omitempty"`
	// GossipKey encrypts and authenticates memberlist gossip: base64 of
	// 16, 24 or 32 random bytes (NewGossipKey), the same on every replica.
	GossipKey string `json:"gossip_key,omitempty"`
}

// Default returns the defaults: a 10 ms tick, heartbeats every 30 ms, a
// 150 ms leader lease, elections after 200-300 ms without a leader, a
// snapshot every 10,000 slots and 5 s of session grace on failover.
func Default() Config {
	return Config{
		Cell:           "local",
		TickMs:         10,
		ElectionTicks:  20,
		HeartbeatTicks: 3,
		LeaseTicks:     15,
		DriftTicks:     2,
		SnapshotEvery:  10000,
		SessionGraceMs: 5000,
		LogLevel:       "info",
	}
}

// Load reads a JSON config file over the defaults (unknown fields are an
// error), then applies LOCKD_* environment overrides.
func Load(path string, env func(string) string) (Config, error) {
	cfg := Default()
	if path != "" {
		f, err := os.Open(path)
		if err != nil {
			return cfg, fmt.Errorf("opening config: %w", err)
		}
		defer f.Close()
		dec := json.NewDecoder(f)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg); err != nil {
			return cfg, fmt.Errorf("reading config %s: %w", path, err)
		}
	}
	if env == nil {
		env = os.Getenv
	}
	if err := cfg.applyEnv(env); err != nil {
		return cfg, err
	}
	return cfg, nil
}

func (c *Config) applyEnv(env func(string) string) error {
	var errs []error
	str := func(name string, dst *string) {
		if v := env(name); v != "" {
			*dst = v
		}
	}
	num := func(name string, dst *uint32) {
		if v := env(name); v != "" {
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				return
			}
			*dst = uint32(n)
		}
	}
	str("LOCKD_CELL", &c.Cell)
	num("LOCKD_ID", &c.ID)
	str("LOCKD_DATA_DIR", &c.DataDir)
	str("LOCKD_CLIENT_LISTEN", &c.ClientListen)
	str("LOCKD_PEER_LISTEN", &c.PeerListen)
	str("LOCKD_GOSSIP_LISTEN", &c.GossipListen)
	str("LOCKD_LOG_LEVEL", &c.LogLevel)
	if v := env("LOCKD_PPROF"); v != "" {
		c.Pprof, _ = strconv.ParseBool(v)
	}
	if v := env("LOCKD_BOOTSTRAP"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("LOCKD_BOOTSTRAP: %w", err))
		}
		c.Bootstrap = b
	}
	errs = append(errs, c.applySecurityEnv(env)...)
	if v := env("LOCKD_REPLICAS"); v != "" {
		reps, err := ParseReplicas(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("LOCKD_REPLICAS: %w", err))
		}
		c.Replicas = reps
	}
	return errors.Join(errs...)
}

// ParseReplicas parses "id=client,peer,gossip;id=client,peer,gossip;...".
func ParseReplicas(s string) ([]Replica, error) {
	var out []Replica
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		idStr, addrs, ok := strings.Cut(part, "=")
		fields := strings.Split(addrs, ",")
		if !ok || len(fields) != 3 {
			return nil, fmt.Errorf("replica %q: want id=client,peer,gossip", part)
		}
		id, err := strconv.ParseUint(idStr, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("replica %q: bad id: %w", part, err)
		}
		out = append(out, Replica{ID: uint32(id), Client: fields[0], Peer: fields[1], Gossip: fields[2]})
	}
	return out, nil
}

var cellName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// Validate reports every problem with the configuration at once.
func (c *Config) Validate() error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !cellName.MatchString(c.Cell) || c.Cell == "." || c.Cell == ".." {
		add("cell %q: want 1-64 characters of [A-Za-z0-9._-]", c.Cell)
	}
	if c.DataDir == "" {
		add("data_dir must be set")
	}
	if len(c.Replicas) == 0 {
		add("replicas must list the cell's members")
	}
	ids := map[uint32]bool{}
	for _, r := range c.Replicas {
		if r.ID == 0 {
			add("replica id 0 is reserved")
		}
		if ids[r.ID] {
			add("replica id %d listed twice", r.ID)
		}
		ids[r.ID] = true
		for name, addr := range map[string]string{"client": r.Client, "peer": r.Peer, "gossip": r.Gossip} {
			if _, _, err := net.SplitHostPort(addr); err != nil {
				add("replica %d %s address %q: %v", r.ID, name, addr, err)
			}
		}
	}
	if !ids[c.ID] {
		add("id %d is not among the replicas", c.ID)
	}
	if c.TickMs <= 0 || c.ElectionTicks <= 0 || c.HeartbeatTicks <= 0 || c.LeaseTicks <= 0 {
		add("tick_ms, election_ticks, heartbeat_ticks and lease_ticks must be positive")
	}
	if c.LeaseTicks <= c.DriftTicks || c.LeaseTicks <= c.HeartbeatTicks || c.ElectionTicks < c.LeaseTicks {
		add("want drift_ticks < lease_ticks, heartbeat_ticks < lease_ticks <= election_ticks")
	}
	if c.SessionGraceMs < 0 {
		add("session_grace_ms must not be negative")
	}
	switch strings.ToLower(c.LogLevel) {
	case "trace", "debug", "info", "warn", "error":
	default:
		add("log_level %q: want trace, debug, info, warn or error", c.LogLevel)
	}
	c.validateSecurity(add)
	if len(errs) > 0 {
		return fmt.Errorf("invalid configuration: %w", errors.Join(errs...))
	}
	return nil
}

// Self returns this replica's entry.
func (c *Config) Self() Replica {
	for _, r := range c.Replicas {
		if r.ID == c.ID {
			return r
		}
	}
	return Replica{}
}

// Tick is the length of one Paxos tick.
func (c *Config) Tick() time.Duration { return time.Duration(c.TickMs) * time.Millisecond }

// Listen returns the bind addresses: the override, or this replica's own.
func (c *Config) Listen() (client, peer, gossip string) {
	self := c.Self()
	client, peer, gossip = self.Client, self.Peer, self.Gossip
	if c.ClientListen != "" {
		client = c.ClientListen
	}
	if c.PeerListen != "" {
		peer = c.PeerListen
	}
	if c.GossipListen != "" {
		gossip = c.GossipListen
	}
	return client, peer, gossip
}
