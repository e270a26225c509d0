// Package cluster holds fault tests of the service run as a cluster of real
// processes: the service binary, built once, runs as several instances over a
// PostgreSQL database and a redis-server of each test's own, which the tests
// kill and restart under load. They need TEST_POSTGRES_URL and
// /usr/bin/redis-server, and skip without them:
//
//	TEST_POSTGRES_URL='postgres://postgres@127.0.0.1:5432/test?sslmode=disable' go test -race ./tests/cluster/
package cluster
