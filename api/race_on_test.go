//go:build race

package api_test

// raceEnabled: the race detector slows the model test's SpiceDB work ~5x.
const raceEnabled = true
