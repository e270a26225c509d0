package auth

// OnJoinFlight makes every Refresh of s call joined once it is a member of
// its token's flight (started it or joined one in progress), before it waits
// for the result: a test's barrier.
func OnJoinFlight(s *Service, joined func()) { s.joinedFlight = joined }
