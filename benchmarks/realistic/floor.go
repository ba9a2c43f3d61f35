package main

import (
	"fmt"
	"strconv"
	"strings"
)

// printFloor prints, for each assumed steady rate, the share of the checks
// that ask a pair for the first time since the start: in the warm-up, and in
// the measured window after it. The run's sequence is the one the arms use
// (same pairs, exponent and seed), so the share is the floor of any answer
// cache's miss ratio at that rate: a pair never asked before is answered by
// the engine whatever the cache holds.
func printFloor(c config, rates string) error {
	seq, err := zipfSequence(c.pairs, c.zipf, c.seed, 1<<21)
	if err != nil {
		return err
	}
	fmt.Printf("| steady rate (req/s) | first-time checks in the %v warm-up | first-time checks in the %v after it |\n|--:|--:|--:|\n", c.warmup, c.measured)
	for _, f := range strings.Split(rates, ",") {
		rate, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || rate <= 0 {
			return fmt.Errorf("-floor %q: want positive rates, e.g. 1000,21000", rates)
		}
		warm := int(rate * c.warmup.Seconds())
		total := warm + int(rate*c.measured.Seconds())
		seen := make([]bool, c.pairs)
		var fresh [2]int
		for i := 0; i < total; i++ {
			k := seq[i%len(seq)] // the workers wrap around the sequence the same way
			if !seen[k] {
				seen[k] = true
				fresh[min(i/max(warm, 1), 1)]++
			}
		}
		fmt.Printf("| %.0f | %.2f %% | %.2f %% |\n", rate, 100*float64(fresh[0])/float64(max(warm, 1)), 100*float64(fresh[1])/float64(max(total-warm, 1)))
	}
	return nil
}
