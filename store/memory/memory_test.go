package memory_test

import (
	"testing"

	"github.com/trellis-iam/trellis/store"
	"github.com/trellis-iam/trellis/store/conformance"
	"github.com/trellis-iam/trellis/store/memory"
)

func newStore(*testing.T) store.Store { return memory.New() }

func TestConformance(t *testing.T) { conformance.Run(t, newStore) }

func TestTxLifecycle(t *testing.T) { conformance.RunTxLifecycle(t, newStore) }

func TestSeqsFromOne(t *testing.T) { conformance.RunSeqsFromOne(t, newStore) }

func TestTamper(t *testing.T) {
	conformance.RunTamper(t, func(*testing.T) conformance.Tamperer { return memory.New() })
}

// TestConcurrent's handles are one store: memory lives in a single process.
func TestConcurrent(t *testing.T) {
	conformance.RunConcurrent(t, func(_ *testing.T, n int) []store.Store {
		s := memory.New()
		out := make([]store.Store, n)
		for i := range out {
			out[i] = s
		}
		return out
	})
}

func TestFederationConformance(t *testing.T) { conformance.RunFederation(t, newStore) }
