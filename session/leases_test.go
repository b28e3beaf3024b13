package session

import (
	"errors"
	"slices"
	"testing"
	"time"
)

var t0 = time.Unix(1_700_000_000, 0)

func TestLeasesExpireOnlyOnTheLeader(t *testing.T) {
	l := NewLeases(5 * time.Second)
	if _, err := l.KeepAlive(t0, "a"); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("keepalive before promote: %v, want ErrNotLeader", err)
	}
	l.Add(t0, "a", time.Second) // ignored: not leading
	if got := l.Expired(t0.Add(time.Hour)); len(got) != 0 {
		t.Fatalf("a follower expired %v", got)
	}
}

func TestLeasesPromoteGrantsGrace(t *testing.T) {
	l := NewLeases(5 * time.Second)
	l.Promote(t0, []SessionTTL{{"a", 10 * time.Second}, {"b", 2 * time.Second}})
	if got := l.Expired(t0.Add(6999 * time.Millisecond)); len(got) != 0 {
		t.Fatalf("expired within ttl+grace: %v", got)
	}
	if got := l.Expired(t0.Add(7 * time.Second)); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("expired = %v, want [b] at ttl+grace", got)
	}
	// Handed out once only, and it cannot be revived.
	if got := l.Expired(t0.Add(8 * time.Second)); len(got) != 0 {
		t.Fatalf("handed out twice: %v", got)
	}
	if _, err := l.KeepAlive(t0.Add(8*time.Second), "b"); !errors.Is(err, ErrExpiring) {
		t.Fatalf("keepalive of an expiring session: %v", err)
	}
}

func TestLeasesKeepAliveExtends(t *testing.T) {
	tests := []struct {
		name    string
		beats   []time.Duration // keepalive times after t0
		check   time.Duration
		expired bool
	}{
		{"no keepalive", nil, 3 * time.Second, true},
		{"kept alive", []time.Duration{time.Second, 2 * time.Second}, 3 * time.Second, false},
		{"kept alive then silent", []time.Duration{time.Second}, 3 * time.Second, true},
		{"keepalive after deadline is refused", []time.Duration{5 * time.Second}, 6 * time.Second, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := NewLeases(0)
			l.Promote(t0, nil)
			l.Add(t0, "s", 2*time.Second)
			for _, b := range tc.beats {
				_, _ = l.KeepAlive(t0.Add(b), "s")
			}
			got := l.Expired(t0.Add(tc.check))
			if (len(got) == 1) != tc.expired {
				t.Fatalf("expired = %v, want expired=%v", got, tc.expired)
			}
		})
	}
}

func TestLeasesSyncRetryRemove(t *testing.T) {
	l := NewLeases(time.Second)
	l.Promote(t0, []SessionTTL{{"a", time.Second}})
	// A session created by a command applied after promotion.
	l.Sync(t0, []SessionTTL{{"a", time.Second}, {"c", time.Second}})
	if got := l.Expired(t0.Add(2 * time.Second)); !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("expired = %v, want [a c]", got)
	}
	l.Retry(t0.Add(2*time.Second), "a")
	if got := l.Expired(t0.Add(2 * time.Second)); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("after retry expired = %v, want [a]", got)
	}
	// The log applied both expiries: sync and remove must not trip on
	// leases that are out of the queue.
	l.Sync(t0.Add(3*time.Second), nil)
	l.Remove("a")
	if _, ok := l.Remaining(t0, "c"); ok {
		t.Fatal("c survived a sync that no longer lists it")
	}
	l.Demote()
	if l.Leading() {
		t.Fatal("still leading after demote")
	}
}
