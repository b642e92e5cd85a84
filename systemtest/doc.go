// Package systemtest proves the operational promises of issue 7 (graceful
// shutdown, crash recovery, surviving a Redis restart, scaling out,
// readiness) with real processes: the thumbnailed binary built once, run in
// its api, worker and all roles as separate OS processes against a real
// redis-server with AOF on, and signalled, killed and restarted as an
// operator or an orchestrator would.
//
// The package holds tests only. It skips itself under -short and when
// redis-server is not on PATH.
package systemtest
