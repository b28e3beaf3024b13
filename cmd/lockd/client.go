package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	lockd "github.com/lockd/lockd/clients/go"
)

// Exit statuses of the client commands, for scripts.
const (
	exitFailure     = 1 // the cell could not be reached, or answered an error
	exitUsage       = 2 // bad flags or arguments
	exitNotAcquired = 3 // lock or leadership not obtained in time
	exitLost        = 4 // the lock or session was lost while held
)

// clientFlags are shared by every command that talks to a cell.
type clientFlags struct {
	endpoints string
	token     string
	cell      string
	timeout   time.Duration
	ca        string
	cert      string
	key       string
	// endpointsSet: the user named the endpoints (else defaults are used).
	endpointsSet bool
}

func (f *clientFlags) register(cmd *cobra.Command) {
	def := os.Getenv("LOCKD_ENDPOINTS")
	if def == "" {
		def = "http://127.0.0.1:7001,http://127.0.0.1:7002,http://127.0.0.1:7003,http://127.0.0.1:7004,http://127.0.0.1:7005"
	}
	cmd.Flags().StringVar(&f.endpoints, "endpoints", def, "comma-separated replica URLs (env LOCKD_ENDPOINTS)")
	f.endpointsSet = os.Getenv("LOCKD_ENDPOINTS") != ""
	cmd.PreRun = func(cmd *cobra.Command, _ []string) {
		f.endpointsSet = f.endpointsSet || cmd.Flags().Changed("endpoints")
	}
	cmd.Flags().StringVar(&f.token, "token", os.Getenv("LOCKD_TOKEN"), "bearer token (env LOCKD_TOKEN)")
	cmd.Flags().StringVar(&f.cell, "cell", "local", "cell name, for names that are not full /ls/ paths")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 10*time.Second, "timeout of each request to the cell")
	cmd.Flags().StringVar(&f.ca, "ca", os.Getenv("LOCKD_CA"), "CA certificate of a TLS cell (env LOCKD_CA)")
	cmd.Flags().StringVar(&f.cert, "cert", os.Getenv("LOCKD_CERT"), "client certificate, for cells that require one (env LOCKD_CERT)")
	cmd.Flags().StringVar(&f.key, "key", os.Getenv("LOCKD_KEY"), "client certificate key (env LOCKD_KEY)")
}

func (f *clientFlags) client() (*lockd.Client, error) {
	var eps []string
	for _, e := range strings.Split(f.endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			eps = append(eps, e)
		}
	}
	opts := []lockd.ClientOption{lockd.WithRequestTimeout(f.timeout)}
	if f.token != "" {
		opts = append(opts, lockd.WithToken(f.token))
	}
	tc, err := f.tlsConfig()
	if err != nil {
		return nil, err
	}
	if tc != nil {
		opts = append(opts, lockd.WithTLS(tc))
		if !f.endpointsSet {
			// The default endpoints, over TLS.
			for i, e := range eps {
				eps[i] = strings.Replace(e, "http://", "https://", 1)
			}
		}
	}
	c, err := lockd.New(eps, opts...)
	if err != nil {
		return nil, usageError{err}
	}
	return c, nil
}

// path turns a name into a node path: full /ls/ paths are kept, others go
// under /ls/<cell>/.
func (f *clientFlags) path(name string) string {
	if strings.HasPrefix(name, "/ls/") {
		return name
	}
	return "/ls/" + f.cell + "/" + strings.TrimPrefix(name, "/")
}

// run wraps a command's body with a client built from the flags, closed
// when the body returns.
func (f *clientFlags) run(body func(cmd *cobra.Command, args []string, c *lockd.Client) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := f.client()
		if err != nil {
			return err
		}
		defer c.Close()
		return body(cmd, args, c)
	}
}

func clientCmds() []*cobra.Command {
	return []*cobra.Command{lockCmd(), electCmd(), statusCmd(), getCmd(), putCmd(), lsCmd(), rmCmd(), watchCmd()}
}

func lockCmd() *cobra.Command {
	var (
		f      clientFlags
		wait   time.Duration
		ttl    time.Duration
		shared bool
		grace  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "lock PATH -- COMMAND [ARGS...]",
		Short: "Run a command while holding a lock",
		Long: `Take the lock PATH (waiting up to --wait), run COMMAND while holding it,
release it when COMMAND ends, and exit with COMMAND's status. The command sees
LOCKD_SEQUENCER (pass it to downstream services to fence writes) and
LOCKD_LOCK_GENERATION. If the lock is lost (the session expired), COMMAND gets
SIGTERM, then SIGKILL after --grace.

Exit status: COMMAND's status; 2 usage; 3 lock not acquired within --wait;
4 lock lost while COMMAND ran; 1 any other failure.`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 1 {
				return usageError{errors.New("want: lockd lock PATH -- COMMAND [ARGS...]")}
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			defer c.Close()
			return runLocked(cmd.Context(), c, f.path(args[0]), args[1:], lockOpts{wait: wait, ttl: ttl, shared: shared, grace: grace},
				cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f.register(cmd)
	cmd.Flags().DurationVar(&wait, "wait", time.Minute, "how long to wait for the lock (0: try once)")
	cmd.Flags().DurationVar(&ttl, "ttl", 10*time.Second, "session TTL")
	cmd.Flags().BoolVar(&shared, "shared", false, "take the lock in shared (reader) mode")
	cmd.Flags().DurationVar(&grace, "grace", 5*time.Second, "time between SIGTERM and SIGKILL when the lock is lost")
	return cmd
}

type lockOpts struct {
	wait, ttl, grace time.Duration
	shared           bool
}

type locker interface {
	Sequencer() string
	Lost() <-chan struct{}
}

func runLocked(ctx context.Context, c *lockd.Client, path string, argv []string, o lockOpts, stdout, stderr io.Writer) error {
	sess, err := lockd.NewSession(ctx, c, lockd.WithTTL(o.ttl), lockd.WithLabel("lockd lock "+path))
	if err != nil {
		return fmt.Errorf("creating a session: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = sess.Close(cctx)
	}()
	lctx := ctx
	if o.wait > 0 {
		var cancel context.CancelFunc
		lctx, cancel = context.WithTimeout(ctx, o.wait)
		defer cancel()
	}
	var held locker
	var unlock func(context.Context) error
	var gen uint64
	if o.shared {
		rw := lockd.NewRWMutex(sess, path)
		if o.wait > 0 {
			err = rw.RLock(lctx)
		} else {
			err = rw.TryRLock(lctx)
		}
		held, unlock = rw, rw.RUnlock
		if g := rw.Grant(); g != nil {
			gen = g.Generation
		}
	} else {
		m := lockd.NewMutex(sess, path)
		if o.wait > 0 {
			err = m.Lock(lctx)
		} else {
			err = m.TryLock(lctx)
		}
		held, unlock, gen = m, m.Unlock, m.Generation()
	}
	if err != nil {
		if errors.Is(err, lockd.ErrLockHeld) || errors.Is(err, lockd.ErrLockDelayed) || errors.Is(err, context.DeadlineExceeded) {
			fmt.Fprintf(stderr, "lockd: lock %s not acquired: %v\n", path, err)
			return exitError{exitNotAcquired}
		}
		return fmt.Errorf("acquiring %s: %w", path, err)
	}
	child := exec.Command(argv[0], argv[1:]...)
	child.Stdin, child.Stdout, child.Stderr = os.Stdin, stdout, stderr
	child.Env = append(os.Environ(), "LOCKD_SEQUENCER="+held.Sequencer(), fmt.Sprintf("LOCKD_LOCK_GENERATION=%d", gen))
	if err := child.Start(); err != nil {
		_ = unlock(context.WithoutCancel(ctx))
		return fmt.Errorf("starting %s: %w", argv[0], err)
	}
	done := make(chan error, 1)
	go func() { done <- child.Wait() }()
	lost := false
	select {
	case err = <-done:
	case <-held.Lost():
		lost = true
		fmt.Fprintf(stderr, "lockd: lock %s lost; stopping %s\n", path, argv[0])
		err = stopChild(child, done, o.grace)
	case <-ctx.Done():
		err = stopChild(child, done, o.grace)
	}
	if !lost {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if uerr := unlock(uctx); uerr != nil {
			fmt.Fprintf(stderr, "lockd: releasing %s: %v\n", path, uerr)
		}
		cancel()
	}
	if lost {
		return exitError{exitLost}
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee):
		if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			return exitError{128 + int(st.Signal())}
		}
		return exitError{ee.ExitCode()}
	}
	return err
}

// stopChild sends SIGTERM, then SIGKILL after grace, and returns its exit.
func stopChild(child *exec.Cmd, done <-chan error, grace time.Duration) error {
	_ = child.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		return err
	case <-time.After(grace):
		_ = child.Process.Kill()
		return <-done
	}
}

func electCmd() *cobra.Command {
	var (
		f         clientFlags
		ttl       time.Duration
		lockDelay time.Duration
	)
	cmd := &cobra.Command{
		Use:   "elect NAME VALUE",
		Short: "Campaign for leadership of NAME with VALUE; resign on Ctrl-C",
		Long: `Campaign in the election NAME (a path, or a name under /ls/<cell>/elections/)
with VALUE, print a line when this process leads, and hold leadership until
SIGINT/SIGTERM, then resign. Exit status 0 after resigning; 4 if leadership was
lost (the session expired); 1 on other failures.`,
		Args: cobra.ExactArgs(2),
		RunE: f.run(func(cmd *cobra.Command, args []string, c *lockd.Client) error {
			name := args[0]
			if !strings.HasPrefix(name, "/ls/") {
				name = "elections/" + strings.TrimPrefix(name, "/")
			}
			return runElect(cmd.Context(), c, f.path(name), args[1], ttl, lockDelay, cmd.OutOrStdout())
		}),
	}
	f.register(cmd)
	cmd.Flags().DurationVar(&ttl, "ttl", 10*time.Second, "session TTL")
	cmd.Flags().DurationVar(&lockDelay, "lock-delay", 15*time.Second, "how long a standby waits after this process dies without resigning")
	return cmd
}

func runElect(ctx context.Context, c *lockd.Client, path, value string, ttl, lockDelay time.Duration, out io.Writer) error {
	sess, err := lockd.NewSession(ctx, c, lockd.WithTTL(ttl), lockd.WithLockDelay(lockDelay), lockd.WithLabel("lockd elect "+path))
	if err != nil {
		return fmt.Errorf("creating a session: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = sess.Close(cctx)
	}()
	e := lockd.NewElection(sess, path)
	fmt.Fprintf(out, "campaigning for %s as %q\n", path, value)
	if err := e.Campaign(ctx, value); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("campaigning: %w", err)
	}
	fmt.Fprintf(out, "leading %s as %q (generation %d, sequencer %s)\n", path, value, e.Generation(), e.Sequencer())
	select {
	case <-ctx.Done():
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := e.Resign(rctx); err != nil {
			return fmt.Errorf("resigning: %w", err)
		}
		fmt.Fprintf(out, "resigned %s\n", path)
		return nil
	case <-sess.Done():
		fmt.Fprintf(out, "lost leadership of %s: %v\n", path, sess.Err())
		return exitError{exitLost}
	}
}

func statusCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Print the cell: leader, lease, and every replica's state",
		Args:  cobra.NoArgs,
		RunE: f.run(func(cmd *cobra.Command, _ []string, c *lockd.Client) error {
			info, err := c.Cluster(cmd.Context())
			if err != nil {
				return fmt.Errorf("asking the cell: %w", err)
			}
			printStatus(cmd.OutOrStdout(), info)
			return nil
		}),
	}
	f.register(cmd)
	return cmd
}

func printStatus(out io.Writer, info *lockd.ClusterInfo) {
	leader := info.Leader
	if leader == "" {
		leader = "none"
	}
	fmt.Fprintf(out, "cell %s  leader %s  ballot %s  lease %s\n\n", info.Cell, leader, info.Ballot, info.LeaseRemaining)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tUP\tBALLOT\tCOMMIT\tAPPLIED\tLAG\tSNAPSHOT\tCONTACT\tGOSSIP\tURL")
	for _, r := range info.Replicas {
		up := "yes"
		if !r.Up {
			up = "DOWN"
		}
		contact := "-"
		if r.LastContact >= 0 && r.Up {
			contact = r.LastContact.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", r.ID, r.Role, up, r.PromisedBallot,
			r.CommitIndex, r.AppliedIndex, r.Lag, r.SnapshotIndex, contact, r.MemberStatus, r.ClientURL)
	}
	tw.Flush()
}

func getCmd() *cobra.Command {
	var (
		f     clientFlags
		stale bool
		meta  bool
	)
	cmd := &cobra.Command{
		Use:   "get PATH",
		Short: "Print a node's contents (--meta for its metadata)",
		Args:  cobra.ExactArgs(1),
		RunE: f.run(func(cmd *cobra.Command, args []string, c *lockd.Client) error {
			var opts []lockd.GetOption
			if stale {
				opts = append(opts, lockd.Stale())
			}
			n, err := c.Get(cmd.Context(), f.path(args[0]), opts...)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if meta {
				fmt.Fprintf(out, "path %s\nkind %s\ninstance %d\ncontent_generation %d\nlock_generation %d\nacl_generation %d\ncreate_index %d\nmodify_index %d\nephemeral_owner %s\n",
					n.Path, n.Kind, n.Instance, n.ContentGeneration, n.LockGeneration, n.ACLGeneration, n.CreateIndex, n.ModifyIndex, n.EphemeralOwner)
				return nil
			}
			_, err = out.Write(n.Contents)
			return err
		}),
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&stale, "stale", false, "answer from the asked replica without checking with the leader")
	cmd.Flags().BoolVar(&meta, "meta", false, "print the metadata instead of the contents")
	return cmd
}

func putCmd() *cobra.Command {
	var (
		f          clientFlags
		createOnly bool
		ifGen      uint64
	)
	cmd := &cobra.Command{
		Use:   "put PATH [VALUE]",
		Short: "Write a node's contents (VALUE, or standard input)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: f.run(func(cmd *cobra.Command, args []string, c *lockd.Client) error {
			var data []byte
			var err error
			if len(args) == 2 {
				data = []byte(args[1])
			} else if data, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), 1<<20)); err != nil {
				return err
			}
			var opts []lockd.PutOption
			if createOnly {
				opts = append(opts, lockd.CreateOnly())
			}
			if cmd.Flags().Changed("if-generation") {
				opts = append(opts, lockd.IfContentGeneration(ifGen))
			}
			n, err := c.Put(cmd.Context(), f.path(args[0]), data, opts...)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s content_generation %d\n", n.Path, n.ContentGeneration)
			return nil
		}),
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&createOnly, "create-only", false, "fail if the node exists")
	cmd.Flags().Uint64Var(&ifGen, "if-generation", 0, "write only if the content generation is this (compare-and-set)")
	return cmd
}

func lsCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "ls PATH",
		Short: "List a directory's children",
		Args:  cobra.ExactArgs(1),
		RunE: f.run(func(cmd *cobra.Command, args []string, c *lockd.Client) error {
			kids, err := c.Children(cmd.Context(), f.path(args[0]))
			if err != nil {
				return err
			}
			for _, k := range kids {
				fmt.Fprintln(cmd.OutOrStdout(), k)
			}
			return nil
		}),
	}
	f.register(cmd)
	return cmd
}

func rmCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "rm PATH",
		Short: "Delete a node (a directory must be empty)",
		Args:  cobra.ExactArgs(1),
		RunE: f.run(func(cmd *cobra.Command, args []string, c *lockd.Client) error {
			return c.Delete(cmd.Context(), f.path(args[0]))
		}),
	}
	f.register(cmd)
	return cmd
}

func watchCmd() *cobra.Command {
	var (
		f         clientFlags
		recursive bool
		since     uint64
	)
	cmd := &cobra.Command{
		Use:   "watch PATH",
		Short: "Print events on a node (or a subtree) as they happen, one per line",
		Args:  cobra.ExactArgs(1),
		RunE: f.run(func(cmd *cobra.Command, args []string, c *lockd.Client) error {
			opts := []lockd.WatchOption{lockd.SinceIndex(since)}
			if recursive {
				opts = append(opts, lockd.Recursive())
			}
			w := c.Watch(cmd.Context(), f.path(args[0]), opts...)
			out := cmd.OutOrStdout()
			for ev := range w.Events() {
				fmt.Fprintf(out, "%d %s %s %s %d\n", ev.Index, ev.Type, ev.Path, ev.Session, ev.Generation)
			}
			if err := w.Err(); err != nil && cmd.Context().Err() == nil {
				return err
			}
			return nil
		}),
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&recursive, "recursive", false, "watch the whole subtree")
	cmd.Flags().Uint64Var(&since, "since", 0, "resume after this log index")
	return cmd
}
