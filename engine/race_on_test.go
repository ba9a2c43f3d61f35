//go:build race

package engine_test

// raceEnabled: under the race detector the differential tests draw a quarter of
// their operations (the detector slows SpiceDB's work ~5x); make test runs them
// again, whole, without it.
const raceEnabled = true
