package directory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/store"
)

// Administration of provisioning (manage_scim): the group → roles mappings,
// the sync status with the drift between the provider and Trellis, and repair.

// SCIMMapping turns an identity-provider group (displayName, externalId or id) into roles.
type SCIMMapping struct {
	Group string   `json:"group"`
	Roles []string `json:"roles"`
}

// SCIMMappings is the body and answer of PUT/GET …/scim/mappings.
type SCIMMappings struct {
	Mappings []SCIMMapping `json:"mappings"`
}

// GetSCIMMappings returns an organization's mappings.
func (s *Service) GetSCIMMappings(ctx context.Context, p Principal, ref string) (SCIMMappings, error) {
	out := SCIMMappings{Mappings: []SCIMMapping{}}
	err := s.read(ctx, func(tx store.Tx) error {
		org, err := s.orgFor(ctx, tx, p, ref, permManageSCIM)
		if err != nil {
			return err
		}
		ms, err := tx.SCIMMappings(ctx, org.ID)
		for _, m := range ms {
			out.Mappings = append(out.Mappings, SCIMMapping{Group: m.Group, Roles: m.Roles})
		}
		return err
	})
	return out, err
}

// PutSCIMMappings replaces an organization's mappings and applies them to
// every provisioned group at once: roles provisioning put there follow the
// mapping; roles set by hand stay. Granting them is weighed like any role change.
func (s *Service) PutSCIMMappings(ctx context.Context, p Principal, ref string, in SCIMMappings) (SCIMMappings, error) {
	switch {
	case in.Mappings == nil: // absent or null: a typo must not clear every mapping
		return SCIMMappings{}, trellis.Invalid("mappings", "is required (an empty list removes every mapping)")
	case len(in.Mappings) > 1000:
		return SCIMMappings{}, trellis.Invalid("mappings", "at most 1000 mappings")
	}
	ms := make([]store.SCIMMapping, 0, len(in.Mappings))
	for i, m := range in.Mappings {
		g := strings.TrimSpace(m.Group)
		if g == "" || len(g) > 255 {
			return SCIMMappings{}, trellis.Invalid(fmt.Sprintf("mappings[%d].group", i), "must be 1-255 characters")
		}
		if len(m.Roles) == 0 {
			return SCIMMappings{}, trellis.Invalid(fmt.Sprintf("mappings[%d].roles", i), "is required")
		}
		ms = append(ms, store.SCIMMapping{Group: g, Roles: dedupeStrings(m.Roles)})
	}
	err := s.run(ctx, p, "scim.mappings.put", func(tx store.Tx, o *op) error {
		org, err := s.orgFor(ctx, tx, p, ref, permManageSCIM)
		if err != nil {
			return err
		}
		for i, m := range ms {
			for j, r := range m.Roles {
				if r == RoleOwner {
					return trellis.Invalid(fmt.Sprintf("mappings[%d].roles[%d]", i, j), "owner is held by users and service accounts only")
				}
			}
			if _, err := s.resolveRoles(ctx, tx, org, m.Roles, fmt.Sprintf("mappings[%d].roles", i)); err != nil {
				return err
			}
			// groups provisioned later get these roles on the SCIM token's
			// authority: the caller maps only what it may grant itself
			if err := s.CheckRoleGrant(ctx, tx, p, org, m.Roles, fmt.Sprintf("mappings[%d].roles", i)); err != nil {
				return err
			}
		}
		if err := tx.PutSCIMMappings(ctx, org.ID, ms); err != nil {
			return err
		}
		groups, err := tx.ListSCIMResources(ctx, org.ID, store.SCIMGroup, store.Page{})
		if err != nil {
			return err
		}
		for _, row := range groups {
			if _, err := orgGroup(ctx, tx, org, row.ID); errors.Is(err, trellis.ErrNotFound) {
				continue // deleted by hand: drift
			} else if err != nil {
				return err
			}
			if _, err := s.scimApplyGroup(ctx, tx, o, org, &row, nil); err != nil {
				return err
			}
			row.UpdatedAt = o.now
			if err := tx.PutSCIMResource(ctx, row); err != nil {
				return err
			}
		}
		o.record(org.ID, "scim.mappings.put", "organization:"+org.ID, map[string]any{"mappings": len(ms)})
		return nil
	})
	if err != nil {
		return SCIMMappings{}, err
	}
	return s.GetSCIMMappings(ctx, p, ref)
}

// SCIMStatus is GET …/scim/status.
type SCIMStatus struct {
	Resources    []SCIMSyncView    `json:"resources"`
	Counts       SCIMCounts        `json:"counts"`
	RecentErrors []SCIMRequestView `json:"recentErrors"`
	Drift        SCIMDrift         `json:"drift"`
}

// SCIMSyncView is one resource type's last request and counts.
type SCIMSyncView struct {
	Resource    string          `json:"resource"`
	LastRequest SCIMRequestView `json:"lastRequest"`
	Requests    int64           `json:"requests"`
	Errors      int64           `json:"errors"`
}

// SCIMRequestView is one provisioning request.
type SCIMRequestView struct {
	At       time.Time `json:"at"`
	Resource string    `json:"resource"`
	Method   string    `json:"method"`
	Status   int       `json:"status"`
	ScimType string    `json:"scimType,omitempty"`
	Detail   string    `json:"detail,omitempty"`
}

// SCIMCounts counts what the provider provisioned.
type SCIMCounts struct {
	Users   int `json:"users"`
	Groups  int `json:"groups"`
	Pending int `json:"pending"`
}

// SCIMDrift is where Trellis and the provider disagree.
type SCIMDrift struct {
	UnprovisionedUsers  []string        `json:"unprovisionedUsers"`
	UnprovisionedGroups []string        `json:"unprovisionedGroups"`
	Memberships         []SCIMDriftItem `json:"memberships"`
	Groups              []SCIMDriftItem `json:"groups"`
	UnmatchedMappings   []string        `json:"unmatchedMappings"`
}

// SCIMDriftItem is one disagreement about one user or group.
type SCIMDriftItem struct {
	Subject  string   `json:"subject"`
	Issues   []string `json:"issues"`
	Repaired []string `json:"repaired,omitempty"`
}

func requestView(r store.SCIMRequest) SCIMRequestView {
	return SCIMRequestView{At: r.At, Resource: r.Resource, Method: r.Method, Status: r.Status, ScimType: r.ScimType, Detail: r.Detail}
}

// GetSCIMStatus reports the sync status and drift of an organization.
func (s *Service) GetSCIMStatus(ctx context.Context, p Principal, ref string) (SCIMStatus, error) {
	out := SCIMStatus{Resources: []SCIMSyncView{}, RecentErrors: []SCIMRequestView{}}
	err := s.read(ctx, func(tx store.Tx) error {
		org, err := s.orgFor(ctx, tx, p, ref, permManageSCIM)
		if err != nil {
			return err
		}
		sync, errs, err := tx.SCIMSyncStatus(ctx, org.ID)
		if err != nil {
			return err
		}
		for _, st := range sync {
			out.Resources = append(out.Resources, SCIMSyncView{Resource: st.Last.Resource, LastRequest: requestView(st.Last), Requests: st.Requests, Errors: st.Errors})
		}
		for _, e := range errs {
			out.RecentErrors = append(out.RecentErrors, requestView(e))
		}
		d, err := s.scimDrift(ctx, tx, org)
		if err != nil {
			return err
		}
		out.Counts, out.Drift = d.counts, d.SCIMDrift
		return nil
	})
	return out, err
}

type drift struct {
	SCIMDrift
	counts SCIMCounts
	// what repair may re-apply
	users  []store.SCIMResource
	groups []store.SCIMResource
}

func (s *Service) scimDrift(ctx context.Context, tx store.Tx, org store.Org) (drift, error) {
	d := drift{SCIMDrift: SCIMDrift{UnprovisionedUsers: []string{}, UnprovisionedGroups: []string{}, Memberships: []SCIMDriftItem{}, Groups: []SCIMDriftItem{}, UnmatchedMappings: []string{}}}
	users, err := tx.ListSCIMResources(ctx, org.ID, store.SCIMUser, store.Page{})
	if err != nil {
		return d, err
	}
	groups, err := tx.ListSCIMResources(ctx, org.ID, store.SCIMGroup, store.Page{})
	if err != nil {
		return d, err
	}
	d.counts.Users, d.counts.Groups = len(users), len(groups)
	provisioned := map[string]bool{}
	for _, u := range users {
		provisioned[u.ID] = true
		want := store.StatusSuspended
		if u.Active {
			want = store.StatusActive
		}
		var issues []string
		m, err := tx.GetMembership(ctx, org.ID, u.ID)
		switch {
		case errors.Is(err, trellis.ErrNotFound):
			issues = append(issues, "membership removed by hand")
		case err != nil:
			return d, err
		default:
			if m.Status != want {
				issues = append(issues, fmt.Sprintf("membership is %s, the provider wants %s", m.Status, want))
			}
			if !slices.Equal(m.Roles, []string{RoleMember}) {
				issues = append(issues, fmt.Sprintf("roles changed by hand: %v", m.Roles))
			}
		}
		if u.Pending != "" {
			d.counts.Pending++
			issues = append(issues, "pending: "+u.Pending)
		}
		if len(issues) > 0 {
			d.Memberships = append(d.Memberships, SCIMDriftItem{Subject: "user:" + u.ID, Issues: issues})
			d.users = append(d.users, u)
		}
	}
	ms, err := tx.ListMembers(ctx, org.ID, store.Page{})
	if err != nil {
		return d, err
	}
	for _, m := range ms {
		if !provisioned[m.User] && !strings.HasPrefix(m.User, "sa_") {
			d.UnprovisionedUsers = append(d.UnprovisionedUsers, "user:"+m.User)
		}
	}
	mappings, err := tx.SCIMMappings(ctx, org.ID)
	if err != nil {
		return d, err
	}
	matched := make([]bool, len(mappings))
	for _, gr := range groups {
		provisioned[gr.ID] = true
		for i, m := range mappings {
			if strings.EqualFold(m.Group, gr.Name) || gr.ExternalID != "" && m.Group == gr.ExternalID || m.Group == gr.ID {
				matched[i] = true
			}
		}
		var issues []string
		g, err := tx.GetGroup(ctx, gr.ID)
		if errors.Is(err, trellis.ErrNotFound) {
			d.Groups = append(d.Groups, SCIMDriftItem{Subject: "group:" + gr.ID, Issues: []string{"group deleted by hand"}})
			continue
		} else if err != nil {
			return d, err
		}
		for _, r := range g.Roles {
			if !slices.Contains(gr.Roles, r) {
				issues = append(issues, "role "+r+" set by hand")
			}
		}
		cur, err := tx.GroupMembers(ctx, g.ID)
		if err != nil {
			return d, err
		}
		have := map[string]bool{}
		for _, m := range cur {
			have[m.ID] = true
			if !slices.Contains(gr.Members, m.ID) {
				issues = append(issues, "member "+m.Kind+":"+m.ID+" added by hand")
			}
		}
		needs := false
		for _, v := range gr.Members {
			if have[v] {
				continue
			}
			kind, err := s.scimMemberKind(ctx, tx, nil, org, v) // no operation: read the store
			if err != nil {
				return d, err
			}
			if kind != "" {
				issues = append(issues, "member "+kind+":"+v+" removed by hand or not applied")
				needs = true
			}
		}
		if gr.Pending != "" {
			d.counts.Pending++
			issues = append(issues, "pending: "+gr.Pending)
			needs = true
		}
		if len(issues) > 0 {
			d.Groups = append(d.Groups, SCIMDriftItem{Subject: "group:" + gr.ID, Issues: issues})
		}
		if needs {
			d.groups = append(d.groups, gr)
		}
	}
	gs, err := tx.ListGroups(ctx, org.ID)
	if err != nil {
		return d, err
	}
	for _, g := range gs {
		if !provisioned[g.ID] {
			d.UnprovisionedGroups = append(d.UnprovisionedGroups, "group:"+g.ID)
		}
	}
	for i, m := range mappings {
		if !matched[i] {
			d.UnmatchedMappings = append(d.UnmatchedMappings, m.Group)
		}
	}
	return d, nil
}

// SCIMRepair is the body of POST …/scim/repair.
type SCIMRepair struct {
	DryRun bool `json:"dryRun"`
}

// SCIMRepairResult lists what failed or half-applied and what was (or, in a
// dry run, would be) re-applied.
type SCIMRepairResult struct {
	DryRun bool            `json:"dryRun"`
	Items  []SCIMDriftItem `json:"items"`
}

// RepairSCIM re-applies what the provider wants where Trellis lags behind it:
// a provisioned user's membership that is missing or in the wrong status,
// group members that were pending or removed. Roles and members set by hand
// are left alone (they are reported as drift). Each repaired resource is one
// audited operation (scim.repair).
func (s *Service) RepairSCIM(ctx context.Context, p Principal, ref string, in SCIMRepair) (SCIMRepairResult, error) {
	out := SCIMRepairResult{DryRun: in.DryRun, Items: []SCIMDriftItem{}}
	var d drift
	var orgID string
	err := s.read(ctx, func(tx store.Tx) error {
		org, err := s.orgFor(ctx, tx, p, ref, permManageSCIM)
		if err != nil {
			return err
		}
		orgID = org.ID
		d, err = s.scimDrift(ctx, tx, org)
		return err
	})
	if err != nil {
		return out, err
	}
	for _, u := range d.users {
		item := SCIMDriftItem{Subject: "user:" + u.ID, Issues: issuesOf(d.Memberships, "user:"+u.ID)}
		if !in.DryRun {
			err := s.run(ctx, p, "scim.repair", func(tx store.Tx, o *op) error {
				org, err := s.orgFor(ctx, tx, p, orgID, permManageSCIM)
				if err != nil {
					return err
				}
				usr, err := tx.GetUser(ctx, u.ID)
				if err != nil {
					return err
				}
				if item.Repaired, err = s.scimApplyUser(ctx, tx, o, org, usr, u.Active); err != nil {
					return err
				}
				if len(item.Repaired) > 0 {
					o.record(org.ID, "scim.repair", "user:"+u.ID, map[string]any{"repaired": item.Repaired})
				}
				return nil
			})
			if err != nil {
				return out, err
			}
		}
		out.Items = append(out.Items, item)
	}
	for _, g := range d.groups {
		item := SCIMDriftItem{Subject: "group:" + g.ID, Issues: issuesOf(d.Groups, "group:"+g.ID)}
		if !in.DryRun {
			err := s.run(ctx, p, "scim.repair", func(tx store.Tx, o *op) error {
				org, err := s.orgFor(ctx, tx, p, orgID, permManageSCIM)
				if err != nil {
					return err
				}
				row, err := tx.GetSCIMResource(ctx, org.ID, store.SCIMGroup, g.ID)
				if err != nil {
					return err
				}
				if item.Repaired, err = s.scimApplyGroup(ctx, tx, o, org, &row, nil); err != nil {
					return err
				}
				row.UpdatedAt = o.now
				if err := tx.PutSCIMResource(ctx, row); err != nil {
					return err
				}
				o.record(org.ID, "scim.repair", "group:"+g.ID, map[string]any{"repaired": item.Repaired, "pending": row.Pending})
				return nil
			})
			if err != nil {
				return out, err
			}
		}
		out.Items = append(out.Items, item)
	}
	return out, nil
}

func issuesOf(items []SCIMDriftItem, subject string) []string {
	for _, it := range items {
		if it.Subject == subject {
			return it.Issues
		}
	}
	return nil
}
