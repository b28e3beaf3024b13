package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/lockd/lockd/internal/config"
	"github.com/lockd/lockd/internal/server"
)

func serveCmd() *cobra.Command {
	var (
		path      string
		id        uint32
		dataDir   string
		bootstrap bool
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run one replica of a cell",
		Long: `Run one replica of a cell. Configuration comes from --config (JSON), then
LOCKD_* environment variables, then flags. A data directory that belongs to
another cell or replica, or is damaged, is refused, never reset. Start the
replicas of a new cell with --bootstrap; a replica whose data was lost starts
without it and rejoins after catching up.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path, os.Getenv)
			if err != nil {
				return usageError{err}
			}
			if cmd.Flags().Changed("id") {
				cfg.ID = id
			}
			if cmd.Flags().Changed("data-dir") {
				cfg.DataDir = dataDir
			}
			if cmd.Flags().Changed("bootstrap") {
				cfg.Bootstrap = bootstrap
			}
			if err := cfg.Validate(); err != nil {
				return usageError{err}
			}
			logger := newLogger(cfg, cmd.ErrOrStderr())
			srv, err := server.New(cfg, logger)
			if err != nil {
				return fmt.Errorf("starting replica %d: %w", cfg.ID, err)
			}
			return srv.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&path, "config", "", "JSON configuration file")
	cmd.Flags().Uint32Var(&id, "id", 0, "this replica's id (overrides the config)")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "data directory (overrides the config)")
	cmd.Flags().BoolVar(&bootstrap, "bootstrap", false, "this replica belongs to a new cell's initial configuration")
	return cmd
}

func newLogger(cfg config.Config, out interface{ Write([]byte) (int, error) }) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "lockd",
		Level:      hclog.LevelFromString(strings.ToLower(cfg.LogLevel)),
		JSONFormat: cfg.LogJSON,
		Output:     out,
	}).With("replica", cfg.ID)
}

// usageError marks errors in what the user asked for (exit status 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func exitUsageOrFailure(err error) int {
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}
