package mutex

import "time"

// ExtendScript is the script that renews a lease, for tests that watch
// renewals.
var ExtendScript = extendScript

// RenewOn makes r renew a held lease each time a value arrives on ticks,
// instead of every third of the lease: a test decides when renewals happen.
func (r *Redis) RenewOn(ticks <-chan time.Time) { r.renewals = ticks }
