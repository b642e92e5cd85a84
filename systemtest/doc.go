// Package systemtest proves the operational promises of issues 7, 11 and
// 12 (graceful shutdown, crash recovery, surviving a Redis restart, scaling
// out, readiness, deliveries that survive a killed worker, an api killed
// mid-upload) with real processes: the thumbnailed binary built once, run in
// its api, worker and all roles as separate OS processes against a real
// redis-server with AOF on, and signalled, killed and restarted as an
// operator or an orchestrator would.
//
// The package holds tests only. Each test skips, saying why, under -short
// and when redis-server is not on PATH; with the CI variable set, a missing
// redis-server fails them instead.
package systemtest
