// Package metrics is kiln's small Prometheus registry: counters and gauges
// (plain or with labels) updated with atomics on hot paths, families
// computed when scraped (CollectFunc), and the text exposition format
// (version 0.0.4) that Prometheus scrapes.
//
// Every service process owns a Registry (svc.Env.Metrics) and serves it on a
// Unix socket in the run directory (ServeUnix); the management service's
// Gatherer writes its own registry, then every other service's, as one
// exposition at GET /metrics. A family name belongs to one process: when two
// sources write the same family, the Gatherer keeps the first and drops the
// rest, so the output always parses.
//
// Label values are the caller's to bound: a vector keeps at most
// MaxSeries series and counts anything beyond in one series whose labels
// are all "overflow", so a client that controls a label value can never
// grow the registry without bound.
package metrics
