package api_test

import (
	"context"
	"testing"

	"github.com/trellis-iam/trellis/store/pgtest"
	"github.com/trellis-iam/trellis/store/postgres"
)

// TestDirectoryOnPostgres runs the directory's HTTP lifecycle tests again with
// the PostgreSQL store behind the directory (the same API, the same rules),
// each on a fresh migrated database.
func TestDirectoryOnPostgres(t *testing.T) {
	onPostgres(t, []namedTest{
		{"OrganizationsCreateGetList", TestOrganizationsCreateGetList},
		{"Memberships", TestMemberships},
		{"CustomerAdminScope", TestCustomerAdminScope},
		{"RoleEscalation", TestRoleEscalation},
		{"Groups", TestGroups},
		{"Invitations", TestInvitations},
		{"SuspendAndReactivate", TestSuspendAndReactivate},
		{"MoveWithPreview", TestMoveWithPreview},
		{"Finding12RolesOfFormerAncestorUnboundAfterMove", TestFinding12RolesOfFormerAncestorUnboundAfterMove},
		{"DeleteCascade", TestDeleteCascade},
		{"ServiceAccountKeys", TestServiceAccountKeys},
		{"AuditLog", TestAuditLog},
		{"Finding12AuditRewriteDetected", TestFinding12AuditRewriteDetected},
		{"PlatformAuditVerify", TestPlatformAuditVerify},
		{"PartnerDelegationNeedsApproval", TestPartnerDelegationNeedsApproval},
		{"CascadingRevocation", TestCascadingRevocation},
		{"MandatoryDelegation", TestMandatoryDelegation},
		{"ImpersonationReadOnlyWithApproval", TestImpersonationReadOnlyWithApproval},
		{"ImpersonationActionsAuditedAndExpiry", TestImpersonationActionsAuditedAndExpiry},
		{"Finding10ImpersonationTokenDiesWithItsImpersonation", TestFinding10ImpersonationTokenDiesWithItsImpersonation},
		{"SCIMEntraLifecycle", TestSCIMEntraLifecycle},
		{"SCIMOktaLifecycle", TestSCIMOktaLifecycle},
		{"SCIMCrossOrganizationIsolation", TestSCIMCrossOrganizationIsolation},
		{"SCIMStatusDriftAndRepair", TestSCIMStatusDriftAndRepair},
		{"SCIMBulk", TestSCIMBulk},
	})
}

type namedTest struct {
	name string
	run  func(*testing.T)
}

// onPostgres runs tests again with the PostgreSQL store behind the harness's
// directory (newTestStore), each on a fresh migrated database.
func onPostgres(t *testing.T, tests []namedTest) {
	pg := pgtest.Start(t)
	saved := newTestStore
	t.Cleanup(func() { newTestStore = saved })
	newTestStore = func(tb testing.TB) testStore {
		url := pg.NewDatabase(tb)
		ctx := context.Background()
		if err := postgres.Migrate(ctx, url); err != nil {
			tb.Fatal(err)
		}
		st, err := postgres.Open(ctx, url)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { _ = st.Close() })
		return st
	}
	for _, c := range tests {
		t.Run(c.name, c.run)
	}
}
