package postgres_test

import (
	"testing"

	"github.com/trellis-iam/trellis/store"
	"github.com/trellis-iam/trellis/store/conformance"
)

func TestFederationConformance(t *testing.T) {
	needServer(t)
	conformance.RunFederation(t, func(t *testing.T) store.Store { return newStore(t) })
}
