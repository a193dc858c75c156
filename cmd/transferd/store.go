package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/transferd/transferd/engine/journal"
	"github.com/transferd/transferd/ingest"
)

// storeFlags are the flags that say where the journal and the projection
// live, shared by every command that opens them.
type storeFlags struct {
	data      string
	natsURL   string
	natsCreds string
	// natsListen exposes the embedded NATS on TCP (serve only), to
	// listenUsers.
	natsListen  string
	listenUsers []journal.ListenUser
	replicas    int
	sync        syncMode
	// transfersMaxAge is how long a TRANSFERS this command creates keeps
	// each state.
	transfersMaxAge time.Duration
	// secretsKeyFile holds the keys tenants' shared secrets are sealed with.
	secretsKeyFile string
}

func (s *storeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&s.data, "data", "./data", "data `directory`: the embedded NATS store and the bbolt projection")
	fs.StringVar(&s.natsURL, "nats-url", "", "`URL` of an external NATS (comma-separated for a cluster); empty runs NATS embedded under --data")
	fs.StringVar(&s.natsCreds, "nats-creds", "", "NATS credentials `file` for --nats-url")
	fs.DurationVar(&s.transfersMaxAge, "transfers-max-age", journal.TransfersMaxAge, "how long stream TRANSFERS keeps each state change, when transferd creates the stream;\n"+
		"an existing stream keeps its own limits (docs/design.md, TRANSFERS retention)")
	fs.IntVar(&s.replicas, "replicas", 0, "stream and bucket replicas on an external NATS cluster (3 on three nodes);\n0 keeps what the streams have, and creates them with one")
	s.sync = syncAlways
	fs.Var(&s.sync, "sync", "when the embedded NATS syncs its store to disk, a `mode`: always, before every acknowledgement\n"+
		"(concurrent events share one sync by group commit), so that a 200 survives a power cut; or interval,\n"+
		"every 2 minutes: a host crash or power cut then loses acknowledged events. With --nats-url the\n"+
		"server's own sync policy applies (see docs/durability.md)")
	fs.StringVar(&s.secretsKeyFile, "secrets-key-file", "", "`file` of the keys that seal tenants' shared secrets at rest: base64 or hex, 32 bytes,\n"+
		"one a line; the first seals, the others only open (rotation). Or the keys themselves, comma-separated,\n"+
		"in TRANSFERD_SECRETS_KEY. Neither: with the embedded NATS a key is generated into <data>/secrets.key;\n"+
		"with --nats-url one is required (every instance must share it)")
}

// syncMode is --sync: always or interval.
type syncMode string

const (
	syncAlways   syncMode = "always"
	syncInterval syncMode = "interval"
)

func (m *syncMode) String() string { return string(*m) }

func (m *syncMode) Set(v string) error {
	switch syncMode(v) {
	case syncAlways, syncInterval:
		*m = syncMode(v)
		return nil
	}
	return fmt.Errorf("want always or interval, not %q", v)
}

func (s *storeFlags) describe() string {
	if s.natsURL == "" {
		return "embedded " + filepath.Join(s.data, "nats")
	}
	var urls []string
	for _, u := range strings.Split(s.natsURL, ",") {
		if pu, err := url.Parse(strings.TrimSpace(u)); err == nil {
			u = pu.Redacted()
		} else {
			u = "(unparsable URL)"
		}
		urls = append(urls, u)
	}
	return "nats " + strings.Join(urls, ",")
}

func (s *storeFlags) openJournal(ctx context.Context, log *slog.Logger) (*journal.Journal, error) {
	if s.transfersMaxAge < time.Second {
		return nil, usageError(fmt.Sprintf("--transfers-max-age %v: want 1s or more", s.transfersMaxAge))
	}
	if err := os.MkdirAll(s.data, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	cfg := journal.Config{URL: s.natsURL, CredentialsFile: s.natsCreds, DataDir: s.data, Listen: s.natsListen, ListenUsers: s.listenUsers,
		Replicas: s.replicas, Logger: log, SyncAlways: s.sync != syncInterval, TransfersMaxAge: s.transfersMaxAge}
	// A cluster that is still electing its leaders may lose the first
	// requests: retry an external NATS for a while, saying so.
	deadline := time.Now().Add(60 * time.Second)
	for wait := 500 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		j, err := journal.Open(ctx, cfg)
		if err == nil {
			return j, nil
		}
		if s.natsURL == "" || !errors.Is(err, journal.ErrUnavailable) || time.Now().Add(wait).After(deadline) {
			return nil, fmt.Errorf("open journal (%s): %w", s.describe(), err)
		}
		log.Warn("journal not reachable yet; retrying", "journal", s.describe(), "err", err, "retry", wait)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// secretsKeyEnv holds the secrets keys themselves, comma-separated: the
// alternative to --secrets-key-file.
const secretsKeyEnv = "TRANSFERD_SECRETS_KEY"

// defaultSecretsKeyFile is where a secrets key is generated for the
// embedded NATS: in --data, beside (not in) the NATS store.
func (s *storeFlags) defaultSecretsKeyFile() string { return filepath.Join(s.data, "secrets.key") }

// secretKeys loads the keys tenants' secrets are sealed with: from
// TRANSFERD_SECRETS_KEY or --secrets-key-file, or for the embedded NATS from
// <data>/secrets.key, generated (0600) when missing.
func (s *storeFlags) secretKeys(getenv env, log *slog.Logger) (*ingest.SecretKeys, error) {
	fromEnv := getenv(secretsKeyEnv)
	file := s.secretsKeyFile
	switch {
	case fromEnv != "" && file != "":
		return nil, usageError(secretsKeyEnv + " and --secrets-key-file: give one")
	case fromEnv != "":
		k, err := ingest.ParseSecretKeys(fromEnv)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", secretsKeyEnv, err)
		}
		return k, nil
	case file == "" && s.natsURL != "":
		return nil, usageError("--nats-url needs --secrets-key-file or " + secretsKeyEnv +
			": every instance on the NATS must seal tenants' secrets with the same key")
	case file == "":
		file = s.defaultSecretsKeyFile()
		created, err := createPrivateFile(file, "# transferd secrets key: seals tenants' shared secrets in the NATS store.\n"+ingest.NewSecretKey()+"\n")
		if err != nil {
			return nil, fmt.Errorf("generate secrets key: %w", err)
		}
		if created {
			// A note, not an alarm, where notes are shown (serve); a
			// command that shows only warnings still says it.
			level := slog.LevelInfo
			if !log.Enabled(context.Background(), level) {
				level = slog.LevelWarn
			}
			log.Log(context.Background(), level, "generated a secrets key for tenants' shared secrets (development default); in production keep it outside the data directory (--secrets-key-file)",
				"file", file)
		}
	}
	b, err := readPrivateFile(file)
	if err != nil {
		return nil, fmt.Errorf("secrets key: %w", err)
	}
	k, err := ingest.ParseSecretKeys(string(b))
	if err != nil {
		return nil, fmt.Errorf("secrets key %s: %w", file, err)
	}
	return k, nil
}

// readPrivateFile reads a file of keys, refusing one that others can read.
func readPrivateFile(name string) ([]byte, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by others (mode %v): chmod 600 it", name, fi.Mode().Perm())
	}
	return os.ReadFile(name)
}

// syncFile makes name and its directory entry durable.
func syncFile(name string) error {
	for _, p := range []string{name, filepath.Dir(name)} {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		err = f.Sync()
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// openRegistry opens the tenant registry on j, sealing secrets with the
// configured keys.
func (s *storeFlags) openRegistry(ctx context.Context, j *journal.Journal, getenv env, log *slog.Logger) (*ingest.Registry, error) {
	keys, err := s.secretKeys(getenv, log)
	if err != nil {
		return nil, err
	}
	return ingest.OpenRegistry(ctx, j.Tenants(), ingest.WithSecretKeys(keys))
}

// defaultNATSUsersFile is where serve --nats-listen generates an importer's
// credentials when no --nats-users-file is given.
func (s *storeFlags) defaultNATSUsersFile() string { return filepath.Join(s.data, "nats-users") }

// loadListenUsers reads the importers allowed on --nats-listen from file:
// one a line, "<user> <password>" (the password plaintext or a bcrypt
// hash, $2a$…) or a user nkey's public key (U…); blank lines and lines
// starting with # are skipped. Without a file, it uses <data>/nats-users,
// generating it (0600) with one user, importer, and a random password.
func (s *storeFlags) loadListenUsers(file string, log *slog.Logger) ([]journal.ListenUser, error) {
	if file == "" {
		file = s.defaultNATSUsersFile()
		created, err := createPrivateFile(file, "# transferd serve --nats-listen: importers, \"<user> <password>\" or a user nkey, one a line.\nimporter "+
			strings.TrimRight(ingest.NewSecretKey(), "=")+"\n")
		if err != nil {
			return nil, fmt.Errorf("generate --nats-users-file: %w", err)
		}
		if created {
			log.Warn("generated credentials for importers on the embedded NATS: user importer, password in the file", "file", file)
		}
	}
	b, err := readPrivateFile(file)
	if err != nil {
		return nil, fmt.Errorf("--nats-users-file: %w", err)
	}
	var users []journal.ListenUser
	for i, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0 || strings.HasPrefix(f[0], "#"):
		case len(f) == 1 && strings.HasPrefix(f[0], "U"):
			users = append(users, journal.ListenUser{Nkey: f[0]})
		case len(f) == 2:
			users = append(users, journal.ListenUser{Name: f[0], Password: f[1]})
		default:
			return nil, fmt.Errorf("--nats-users-file %s:%d: want \"<user> <password>\" or a user nkey", file, i+1)
		}
	}
	if len(users) == 0 {
		return nil, fmt.Errorf("--nats-users-file %s: no user", file)
	}
	return users, nil
}

// createPrivateFile creates path (0600) holding content, synced to disk,
// and reports whether it did: an existing file is left alone (false, nil).
// A file it could not write whole is removed.
func createPrivateFile(path, content string) (bool, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	_, err = f.WriteString(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncFile(path)
	}
	if err != nil {
		os.Remove(path)
		return false, err
	}
	return true, nil
}
