package journal

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// ListenUser is an importer allowed to connect on Config.Listen: a user
// name and password (plaintext or a bcrypt hash, "$2a$…"), or a user nkey's
// public key ("U…") whose holder signs the server's challenge.
type ListenUser struct {
	Name     string
	Password string
	Nkey     string
}

// importersAccount is the account importers connect to. It has no
// JetStream and no subjects of the journal's own account, only the imports
// below: reading the streams MIGRATIONS and TRANSFERS through consumers.
// The KV buckets and the migrations.> subjects are out of its reach.
const importersAccount = "IMPORTERS"

// internalUser is the user the journal's own in-process connection
// authenticates as when the server listens: a random password each start.
const internalUser = "transferd"

// importerStreams are the streams importers may read.
var importerStreams = []string{StreamEvents, StreamTransfers}

// importedServices are the journal account's JetStream API subjects, per
// stream, that the importers account imports (what a JetStream consumer
// needs), and how their answers come back. Consumer creation is not among
// them: it goes through the journal's consumerGate.
var importedServices = []struct {
	subject string
	resp    server.ServiceRespType
}{
	{"$JS.API.STREAM.INFO.%s", server.Singleton},
	{"$JS.API.STREAM.MSG.GET.%s", server.Singleton},
	{"$JS.API.DIRECT.GET.%s", server.Streamed},
	{"$JS.API.DIRECT.GET.%s.>", server.Singleton},
	{"$JS.API.CONSUMER.INFO.%s.*", server.Singleton},
	{"$JS.API.CONSUMER.DELETE.%s.*", server.Singleton},
	{"$JS.API.CONSUMER.NAMES.%s", server.Singleton},
	{"$JS.API.CONSUMER.LIST.%s", server.Singleton},
	{"$JS.API.CONSUMER.MSG.NEXT.%s.*", server.Streamed},
	{"$JS.ACK.%s.>", server.Singleton},
}

// jsAccountInfo is JetStream's account info request. The importers account
// imports it from the global account: besides answering clients that ask,
// this keeps the server from wiring the whole JetStream API ($JS.API.>) into
// the importers account (see nats-server's enableJetStreamInfoServiceImportOnly),
// so that only the subjects imported here, and the gate's, are answered.
const jsAccountInfo = "$JS.API.INFO"

// gatedSubjects are the consumer creation subjects consumerGate answers in
// the importers account, per stream.
var gatedSubjects = []string{
	"$JS.API.CONSUMER.CREATE.%s",
	"$JS.API.CONSUMER.CREATE.%s.>",
	"$JS.API.CONSUMER.DURABLE.CREATE.%s.*",
}

// gateUser is the importers account's user the consumer gate connects as.
const gateUser = "transferd-gate"

// listenAuth is the authentication of an embedded server that listens.
type listenAuth struct {
	internalPass, gatePass string
}

// configureListenAuth sets opts up for importers: users in an importers
// account, the journal's own user in the global account. It fails without
// users: the listener would be open to anyone who can reach it.
func configureListenAuth(opts *server.Options, users []ListenUser) (*listenAuth, error) {
	if len(users) == 0 {
		return nil, errors.New("journal: Listen needs at least one ListenUser: the embedded NATS does not listen without authentication")
	}
	a := &listenAuth{internalPass: randomPassword(), gatePass: randomPassword()}
	imp := server.NewAccount(importersAccount)
	opts.Accounts = []*server.Account{imp}
	pub := []string{jsAccountInfo}
	for _, st := range importerStreams {
		for _, s := range importedServices {
			pub = append(pub, fmt.Sprintf(s.subject, st))
		}
		for _, s := range gatedSubjects {
			pub = append(pub, fmt.Sprintf(s, st))
		}
	}
	perms := &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: pub},
		Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>"}},
	}
	opts.Users = []*server.User{
		{Username: internalUser, Password: a.internalPass}, // the global account, every right
		{Username: gateUser, Password: a.gatePass, Account: imp},
	}
	seen := map[string]bool{internalUser: true, gateUser: true}
	for i, u := range users {
		switch {
		case u.Nkey != "":
			if u.Name != "" || u.Password != "" || !strings.HasPrefix(u.Nkey, "U") {
				return nil, fmt.Errorf("journal: listen user %d: an nkey user is a public user nkey (U…) alone", i+1)
			}
			opts.Nkeys = append(opts.Nkeys, &server.NkeyUser{Nkey: u.Nkey, Account: imp, Permissions: perms})
		case u.Name == "" || u.Password == "":
			return nil, fmt.Errorf("journal: listen user %d: needs a name and a password, or an nkey", i+1)
		case seen[u.Name]:
			return nil, fmt.Errorf("journal: listen user %q: reserved or given twice", u.Name)
		default:
			seen[u.Name] = true
			opts.Users = append(opts.Users, &server.User{Username: u.Name, Password: u.Password, Account: imp, Permissions: perms})
		}
	}
	return a, nil
}

// wireImports connects the importers account to the global account's
// streams, once the server exists.
func wireImports(s *server.Server) error {
	g := s.GlobalAccount()
	imp, err := s.LookupAccount(importersAccount)
	if err != nil {
		return err
	}
	if err := g.AddServiceExport(jsAccountInfo, []*server.Account{imp}); err != nil {
		return fmt.Errorf("export %s: %w", jsAccountInfo, err)
	}
	if err := imp.AddServiceImport(g, jsAccountInfo, jsAccountInfo); err != nil {
		return fmt.Errorf("import %s: %w", jsAccountInfo, err)
	}
	for _, st := range importerStreams {
		for _, svc := range importedServices {
			subj := fmt.Sprintf(svc.subject, st)
			if err := g.AddServiceExportWithResponse(subj, svc.resp, []*server.Account{imp}); err != nil {
				return fmt.Errorf("export %s: %w", subj, err)
			}
			if err := imp.AddServiceImport(g, subj, subj); err != nil {
				return fmt.Errorf("import %s: %w", subj, err)
			}
		}
	}
	return nil
}

func randomPassword() string {
	b := make([]byte, 24)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// consumerGate creates importers' consumers on their behalf: it answers
// the consumer creation requests of the importers account, refuses push
// consumers (a push consumer's deliver subject is published to in the
// journal's account, where it could write into a stream or a bucket), and
// passes the others to JetStream unchanged.
type consumerGate struct {
	in, out *nats.Conn
	timeout time.Duration
	log     *slog.Logger
	slots   chan struct{}
}

func startGate(srv *server.Server, pass string, out *nats.Conn, timeout time.Duration, log *slog.Logger) (*consumerGate, error) {
	in, err := nats.Connect("", nats.InProcessServer(srv), nats.UserInfo(gateUser, pass), nats.Name("transferd-consumer-gate"))
	if err != nil {
		return nil, err
	}
	g := &consumerGate{in: in, out: out, timeout: timeout, log: log, slots: make(chan struct{}, 64)}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	for _, st := range importerStreams {
		for _, s := range gatedSubjects {
			if _, err := in.Subscribe(fmt.Sprintf(s, st), g.handle); err != nil {
				in.Close()
				return nil, err
			}
		}
	}
	if err := in.Flush(); err != nil {
		in.Close()
		return nil, err
	}
	return g, nil
}

func (g *consumerGate) close() { g.in.Close() }

func (g *consumerGate) handle(m *nats.Msg) {
	if m.Reply == "" {
		return
	}
	select {
	case g.slots <- struct{}{}:
	default:
		g.refuse(m, 503, "too many consumer creations at once")
		return
	}
	go func() {
		defer func() { <-g.slots }()
		var req struct {
			Config struct {
				DeliverSubject string `json:"deliver_subject"`
			} `json:"config"`
		}
		if err := json.Unmarshal(m.Data, &req); err != nil {
			g.refuse(m, 400, "malformed consumer create request")
			return
		}
		if req.Config.DeliverSubject != "" {
			g.log.Warn("journal: refused an importer's push consumer", "subject", m.Subject, "deliverSubject", req.Config.DeliverSubject)
			g.refuse(m, 400, "transferd: push consumers are not allowed on the embedded NATS listener; use a pull consumer")
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), g.timeout)
		defer cancel()
		resp, err := g.out.RequestMsgWithContext(ctx, &nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data})
		if err != nil {
			g.refuse(m, 503, "transferd: "+err.Error())
			return
		}
		m.RespondMsg(&nats.Msg{Header: resp.Header, Data: resp.Data})
	}()
}

// refuse answers a consumer creation with a JetStream API error.
func (g *consumerGate) refuse(m *nats.Msg, code int, desc string) {
	b, _ := json.Marshal(map[string]any{
		"type":  "io.nats.jetstream.api.v1.consumer_create_response",
		"error": map[string]any{"code": code, "description": desc},
	})
	m.Respond(b)
}
