package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func validConfig() Config {
	c := Default()
	c.ID = 1
	c.DataDir = "/tmp/x"
	c.Replicas = []Replica{{ID: 1, Client: "127.0.0.1:7001", Peer: "127.0.0.1:7101", Gossip: "127.0.0.1:7201"}}
	return c
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   []string // every substring must appear: all problems at once
	}{
		{"valid", func(*Config) {}, nil},
		{"bad cell and missing dir", func(c *Config) { c.Cell = "a/b"; c.DataDir = "" }, []string{"cell", "data_dir"}},
		{"id not a member", func(c *Config) { c.ID = 9 }, []string{"id 9 is not among"}},
		{"duplicate and bad address", func(c *Config) {
			c.Replicas = append(c.Replicas, Replica{ID: 1, Client: "nope", Peer: "h:1", Gossip: "h:2"})
		}, []string{"listed twice", "client address"}},
		{"lease longer than election", func(c *Config) { c.LeaseTicks = 100 }, []string{"lease_ticks"}},
		{"bad log level", func(c *Config) { c.LogLevel = "loud" }, []string{"log_level"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.mutate(&c)
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestLoadFileAndEnv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.json")
	if err := os.WriteFile(path, []byte(`{"cell":"prod","id":2,"data_dir":"/d"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"LOCKD_ID":       "3",
		"LOCKD_REPLICAS": "3=h:1,h:2,h:3;4=h:4,h:5,h:6",
	}
	c, err := Load(path, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.Cell != "prod" || c.ID != 3 || len(c.Replicas) != 2 || c.Replicas[1].Gossip != "h:6" || c.TickMs != 10 {
		t.Fatalf("loaded %+v", c)
	}
	if err := os.WriteFile(path, []byte(`{"cel":"typo"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path, func(string) string { return "" }); err == nil || !strings.Contains(err.Error(), "unknown field") {
		t.Fatalf("unknown field accepted: %v", err)
	}
}
