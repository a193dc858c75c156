package api

import (
	"context"
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/transferd/transferd/engine"
)

// Metrics are transferd's Prometheus metrics, in a registry of their own
// (nothing registers into the global one): ingest requests, the query API's
// requests and open streams, the projector's lag and progress, and the Go
// runtime and process collectors. Create them with NewMetrics before the
// ingest handler, so that its Config.Observe can be ObserveIngest.
type Metrics struct {
	reg  *prometheus.Registry
	http http.Handler

	ingestRequests   *prometheus.CounterVec
	ingestDuration   *prometheus.HistogramVec
	ingestDuplicates *prometheus.CounterVec
	apiRequests      *prometheus.CounterVec
	apiDuration      *prometheus.HistogramVec
	streams          prometheus.Gauge
	buildInfo        *prometheus.GaugeVec
}

// NewMetrics returns the metrics with the runtime and process collectors
// registered.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		ingestRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "transferd_ingest_requests_total",
			Help: "Ingest requests by route, source, event kind (empty when the request failed before parsing) and HTTP status.",
		}, []string{"route", "source", "kind", "status"}),
		ingestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "transferd_ingest_request_duration_seconds",
			Help:    "Time to answer an ingest request, journal acknowledgement included.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route"}),
		ingestDuplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "transferd_ingest_duplicates_total",
			Help: "Events JetStream recognised as duplicates (same identity within its duplicate window).",
		}, []string{"source", "kind"}),
		apiRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "transferd_api_requests_total",
			Help: "Query API requests by route pattern and HTTP status.",
		}, []string{"route", "status"}),
		apiDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "transferd_api_request_duration_seconds",
			Help:    "Time to answer a query API request (streams: their whole life).",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1, 5},
		}, []string{"route"}),
		buildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "transferd_build_info",
			Help: "Always 1; its labels say which transferd version and Go release run.",
		}, []string{"version", "goversion"}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "transferd_api_streams_open",
			Help: "Open Server-Sent Events streams.",
		}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.ingestRequests, m.ingestDuration, m.ingestDuplicates,
		m.apiRequests, m.apiDuration, m.streams, m.buildInfo,
	)
	m.SetVersion("")
	m.http = promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	return m
}

// SetVersion sets transferd_build_info's version label (the binary's
// -X main.version); empty takes the module version from the build
// information, or "dev".
func (m *Metrics) SetVersion(version string) {
	if version == "" {
		version = "dev"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			version = bi.Main.Version
		}
	}
	m.buildInfo.Reset()
	m.buildInfo.WithLabelValues(version, runtime.Version()).Set(1)
}

// Registry returns the registry, for other parts of the process to add
// their collectors to.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// IngestOutcome is one ingest request's result. It mirrors ingest.Outcome
// field for field, so that serve can pass one to the other while api stays
// independent of ingest (the arrows of DESIGN §2).
type IngestOutcome struct {
	Route     string
	Source    engine.Source
	Kind      engine.Kind
	Status    int
	Code      string
	Duplicate bool
	Duration  time.Duration
	// Issuer and TransferID are for logs, never metric labels (unbounded).
	Issuer     string
	TransferID string
}

// ObserveIngest records one ingest request.
func (m *Metrics) ObserveIngest(o IngestOutcome) {
	m.ingestRequests.WithLabelValues(o.Route, string(o.Source), string(o.Kind), statusText(o.Status)).Inc()
	m.ingestDuration.WithLabelValues(o.Route).Observe(o.Duration.Seconds())
	if o.Duplicate {
		m.ingestDuplicates.WithLabelValues(string(o.Source), string(o.Kind)).Inc()
	}
}

// routeMetrics are one route's request metrics, resolved once: looking
// labels up on every request would cost more than some routes.
type routeMetrics struct {
	ok       prometheus.Counter
	byStatus *prometheus.CounterVec
	route    string
	duration prometheus.Observer
}

func (m *Metrics) route(pattern string) *routeMetrics {
	return &routeMetrics{
		ok:       m.apiRequests.WithLabelValues(pattern, "200"),
		byStatus: m.apiRequests,
		route:    pattern,
		duration: m.apiDuration.WithLabelValues(pattern),
	}
}

func (rm *routeMetrics) observe(status int, d time.Duration) {
	if status == http.StatusOK {
		rm.ok.Inc()
	} else {
		rm.byStatus.WithLabelValues(rm.route, statusText(status)).Inc()
	}
	rm.duration.Observe(d.Seconds())
}

func statusText(code int) string {
	switch code {
	case http.StatusOK:
		return "200"
	case http.StatusBadRequest:
		return "400"
	case http.StatusUnauthorized:
		return "401"
	case http.StatusNotFound:
		return "404"
	case http.StatusServiceUnavailable:
		return "503"
	}
	return strconv.Itoa(code)
}

// projectorCollector reports the projector's progress and lag at scrape
// time.
type projectorCollector struct {
	s                               *Server
	lagSeqs, lagSecs, checkpoint    *prometheus.Desc
	lastSeq, applied, dups, journal *prometheus.Desc
	parked, commits                 *prometheus.Desc
}

func newProjectorCollector(s *Server) *projectorCollector {
	return &projectorCollector{
		s:          s,
		lagSeqs:    prometheus.NewDesc("transferd_projector_lag_sequences", "MIGRATIONS messages stored but not yet applied to the projection.", nil, nil),
		lagSecs:    prometheus.NewDesc("transferd_projector_lag_seconds", "Age of the oldest MIGRATIONS message not yet applied (0 when caught up).", nil, nil),
		checkpoint: prometheus.NewDesc("transferd_projector_checkpoint", "The last MIGRATIONS sequence applied to the projection.", nil, nil),
		lastSeq:    prometheus.NewDesc("transferd_journal_last_sequence", "The last MIGRATIONS sequence.", nil, nil),
		applied:    prometheus.NewDesc("transferd_projector_applied_events_total", "Distinct events applied to the projection.", nil, nil),
		commits:    prometheus.NewDesc("transferd_projector_commits_total", "Batches the projector committed since start, one bbolt transaction each; rate(transferd_projector_applied_events_total) / rate(this) is the mean batch.", nil, nil),
		dups:       prometheus.NewDesc("transferd_projector_duplicates_total", "Re-delivered events the projection skipped (identity already applied).", nil, nil),
		journal:    prometheus.NewDesc("transferd_journal_up", "1 when the journal answered the scrape's stream info request.", nil, nil),
		parked:     prometheus.NewDesc("transferd_projector_parked_events", "Events the projector could not fold and parked (GET /v1/parked); they stay in the journal.", nil, nil),
	}
}

func (c *projectorCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.lagSeqs, c.lagSecs, c.checkpoint, c.lastSeq, c.applied, c.dups, c.journal, c.parked, c.commits} {
		ch <- d
	}
}

func (c *projectorCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.s.cfg.ReadyTimeout)
	defer cancel()
	js, ps, err := c.s.lag(ctx)
	up := 1.0
	if err != nil {
		up = 0
	}
	ch <- prometheus.MustNewConstMetric(c.journal, prometheus.GaugeValue, up)
	if js != nil {
		ch <- prometheus.MustNewConstMetric(c.lastSeq, prometheus.GaugeValue, float64(js.LastSeq))
	}
	if ps != nil {
		ch <- prometheus.MustNewConstMetric(c.checkpoint, prometheus.GaugeValue, float64(ps.Checkpoint))
		if err == nil {
			ch <- prometheus.MustNewConstMetric(c.lagSeqs, prometheus.GaugeValue, float64(ps.LagSequences))
			ch <- prometheus.MustNewConstMetric(c.lagSecs, prometheus.GaugeValue, ps.LagSeconds)
		}
	}
	if st, err := c.s.store.Stats(); err == nil {
		ch <- prometheus.MustNewConstMetric(c.applied, prometheus.CounterValue, float64(st.Events))
		ch <- prometheus.MustNewConstMetric(c.dups, prometheus.CounterValue, float64(st.Duplicates))
		ch <- prometheus.MustNewConstMetric(c.commits, prometheus.CounterValue, float64(c.s.store.Commits()))
		ch <- prometheus.MustNewConstMetric(c.parked, prometheus.GaugeValue, float64(st.Parked))
	}
}

// Handler serves the metrics in the Prometheus exposition format (the
// Server serves it at /metrics).
func (m *Metrics) Handler() http.Handler { return m.http }
