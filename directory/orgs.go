package directory

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/engine"
	"github.com/trellis-iam/trellis/store"
)

// Organization is an organization as clients see it.
type Organization struct {
	ID           string            `json:"id"`
	Slug         string            `json:"slug"`
	Name         string            `json:"name"`
	Parent       *string           `json:"parent"`
	Path         []string          `json:"path"` // ids from the top-level organization down to this one
	Depth        int               `json:"depth"`
	Status       string            `json:"status"`
	Domains      []DomainView      `json:"domains"`
	Branding     map[string]string `json:"branding"`
	FeatureFlags map[string]bool   `json:"featureFlags"`
	Policy       Policy            `json:"policy"`
	CreatedAt    time.Time         `json:"createdAt"`
	UpdatedAt    time.Time         `json:"updatedAt"`
}

// Policy is how an organization lets others administer it.
type Policy struct {
	// RequireDelegationApproval: delegations on it stay pending until one of
	// its own administrators approves them.
	RequireDelegationApproval bool `json:"requireDelegationApproval"`
	// DelegationRequired (mandatory delegation): it has no administrators of
	// its own; ancestors and delegations administer it.
	DelegationRequired bool `json:"delegationRequired"`
	// RequireImpersonationApproval: impersonating its members needs the
	// approval of one of its administrators.
	RequireImpersonationApproval bool `json:"requireImpersonationApproval"`
}

// PolicyPatch is the policy part of an organization merge patch.
type PolicyPatch struct {
	RequireDelegationApproval    *bool `json:"requireDelegationApproval"`
	DelegationRequired           *bool `json:"delegationRequired"`
	RequireImpersonationApproval *bool `json:"requireImpersonationApproval"`
}

// DomainView is a claimed email domain.
type DomainView struct {
	Domain     string     `json:"domain"`
	Verified   bool       `json:"verified"`
	Method     string     `json:"method,omitempty"`
	VerifiedAt *time.Time `json:"verifiedAt,omitempty"`
}

// CreateOrg is the body of POST /v1/organizations.
type CreateOrg struct {
	Name         string            `json:"name"`
	Slug         string            `json:"slug"`
	Parent       string            `json:"parent"`
	Domains      []string          `json:"domains"`
	FeatureFlags map[string]bool   `json:"featureFlags"`
	Branding     map[string]string `json:"branding"`
	Policy       Policy            `json:"policy"`
}

// OrgPatch is the body of PATCH /v1/organizations/{org}: a JSON merge patch;
// a null flag or branding value removes it.
type OrgPatch struct {
	Name         *string            `json:"name"`
	Status       *string            `json:"status"`
	Branding     map[string]*string `json:"branding"`
	FeatureFlags map[string]*bool   `json:"featureFlags"`
	Policy       *PolicyPatch       `json:"policy"`
}

var (
	slugPattern   = regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$`)
	domainPattern = regexp.MustCompile(`^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$`)
	flagPattern   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$`)
	colorPattern  = regexp.MustCompile(`^#[0-9a-fA-F]{6}$`)
	nonSlug       = regexp.MustCompile(`[^a-z0-9]+`)
)

// orgIDPrefix tells ids from slugs in paths: slugs cannot hold "_".
const orgIDPrefix = "org_"

// resolveOrg finds an organization by id or slug.
func resolveOrg(ctx context.Context, tx store.Tx, ref string) (store.Org, error) {
	ref = strings.TrimPrefix(ref, "organization:") // a graph reference names the same org
	if strings.HasPrefix(ref, orgIDPrefix) {
		return tx.GetOrg(ctx, ref)
	}
	return tx.GetOrgBySlug(ctx, strings.ToLower(ref))
}

// path lists the ids from the top-level organization down to org.
func (s *Service) path(ctx context.Context, tx store.Tx, org store.Org) ([]string, error) {
	out := []string{org.ID}
	for cur := org; cur.Parent != ""; {
		if len(out) > s.cfg.MaxDepth+1 {
			return nil, fmt.Errorf("directory: organization %s: parent chain deeper than %d", org.ID, s.cfg.MaxDepth)
		}
		p, err := tx.GetOrg(ctx, cur.Parent)
		if err != nil {
			return nil, fmt.Errorf("directory: parent of %s: %w", cur.ID, err)
		}
		out = append(out, p.ID)
		cur = p
	}
	slices.Reverse(out)
	return out, nil
}

// subtree lists org and every descendant, parents before children.
func subtree(ctx context.Context, tx store.Tx, org store.Org) ([]store.Org, error) {
	out := []store.Org{org}
	for i := 0; i < len(out); i++ {
		kids, err := tx.Children(ctx, out[i].ID)
		if err != nil {
			return nil, err
		}
		out = append(out, kids...)
	}
	return out, nil
}

func (s *Service) view(ctx context.Context, tx store.Tx, o store.Org) (Organization, error) {
	path, err := s.path(ctx, tx, o)
	if err != nil {
		return Organization{}, err
	}
	v := Organization{
		ID: o.ID, Slug: o.Slug, Name: o.Name, Path: path, Depth: len(path), Status: o.Status,
		Domains: []DomainView{}, Branding: o.Branding, FeatureFlags: o.FeatureFlags,
		Policy: Policy{RequireDelegationApproval: o.Policy.DelegationApproval, DelegationRequired: o.Policy.DelegationRequired,
			RequireImpersonationApproval: o.Policy.ImpersonationApproval},
		CreatedAt: o.CreatedAt, UpdatedAt: o.UpdatedAt,
	}
	if o.Parent != "" {
		v.Parent = &o.Parent
	}
	if v.Branding == nil {
		v.Branding = map[string]string{}
	}
	if v.FeatureFlags == nil {
		v.FeatureFlags = map[string]bool{}
	}
	for _, d := range o.Domains {
		v.Domains = append(v.Domains, DomainView{Domain: d.Domain, Verified: d.Verified, Method: d.Method, VerifiedAt: d.VerifiedAt})
	}
	return v, nil
}

// orgTuples are the relationships that place an organization in the graph.
func (s *Service) orgTuples(o store.Org) []engine.Relationship {
	var out []engine.Relationship
	if o.Parent != "" {
		out = append(out, rel(orgRef(o.ID), "parent", subj("organization", o.Parent)))
	} else {
		out = append(out, rel(orgRef(o.ID), "platform", subj("platform", s.cfg.Platform)))
	}
	if o.Status == store.StatusSuspended {
		out = append(out,
			rel(orgRef(o.ID), "suspended", subj("user", "*")),
			rel(orgRef(o.ID), "suspended", subj("service_account", "*")))
	}
	return out
}

// lineageTuples place organization id under each of its ancestors (above:
// top first, the parent last): the lineage relation through which govern and
// is_suspended read every level above at once. They mirror the parent rows;
// the effects layer refuses any that do not (weighLineage).
func lineageTuples(id string, above []string) []engine.Relationship {
	out := make([]engine.Relationship, 0, len(above))
	for _, a := range above {
		out = append(out, rel(orgRef(id), "lineage", subj("organization", a)))
	}
	return out
}

// relineage moves the lineage of orgs (a subtree) from the ancestors oldAbove
// to newAbove: what a move writes beside the parent change. Ancestors inside
// the subtree stay; one on both sides ends touched.
func relineage(orgs []store.Org, oldAbove, newAbove []string) []engine.RelationshipUpdate {
	var out []engine.RelationshipUpdate
	for _, o := range orgs {
		for _, r := range lineageTuples(o.ID, oldAbove) {
			out = append(out, engine.RelationshipUpdate{Operation: engine.OpDelete, Relationship: r})
		}
		for _, r := range lineageTuples(o.ID, newAbove) {
			out = append(out, engine.RelationshipUpdate{Operation: engine.OpTouch, Relationship: r})
		}
	}
	return out
}

func validName(field, name string) (string, error) {
	name = strings.TrimSpace(name)
	switch {
	case name == "":
		return "", trellis.Invalid(field, "is required")
	case utf8.RuneCountInString(name) > 200:
		return "", trellis.Invalid(field, "must be at most 200 characters")
	}
	return name, nil
}

func normalizeDomain(field, d string) (string, error) {
	d = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
	if len(d) > 253 || !domainPattern.MatchString(d) {
		return "", trellis.Invalid(field, "%q is not a domain name (e.g. example.com)", d)
	}
	return d, nil
}

func validFlags(flags map[string]bool) error {
	if len(flags) > 100 {
		return trellis.Invalid("featureFlags", "at most 100 flags")
	}
	for k := range flags {
		if !flagPattern.MatchString(k) {
			return trellis.Invalid("featureFlags."+k, "flag names are 1-64 letters, digits, or _ . : -")
		}
	}
	return nil
}

// validBranding checks the known branding fields; other keys are kept as given.
func validBranding(b map[string]string) error {
	if len(b) > 50 {
		return trellis.Invalid("branding", "at most 50 fields")
	}
	for k, v := range b {
		field := "branding." + k
		switch {
		case len(k) == 0 || len(k) > 64:
			return trellis.Invalid("branding", "field names are 1-64 characters")
		case len(v) > 2048:
			return trellis.Invalid(field, "must be at most 2048 characters")
		case (k == "logoUrl" || k == "faviconUrl") && v != "":
			u, err := url.Parse(v)
			if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				return trellis.Invalid(field, "must be an absolute http(s) URL")
			}
		case (k == "primaryColor" || k == "backgroundColor") && v != "" && !colorPattern.MatchString(v):
			return trellis.Invalid(field, "must be a #rrggbb colour")
		}
	}
	return nil
}

// CreateOrganization creates a top-level organization (provider admins) or a
// sub-organization (callers who manage the parent).
func (s *Service) CreateOrganization(ctx context.Context, p Principal, in CreateOrg) (Organization, error) {
	name, err := validName("name", in.Name)
	if err != nil {
		return Organization{}, err
	}
	slug := strings.ToLower(strings.TrimSpace(in.Slug))
	if slug == "" {
		slug = strings.Trim(nonSlug.ReplaceAllString(strings.ToLower(name), "-"), "-")
		if len(slug) > 63 {
			slug = strings.Trim(slug[:63], "-")
		}
	}
	if !slugPattern.MatchString(slug) {
		return Organization{}, trellis.Invalid("slug", "must be 1-63 lower-case letters, digits or '-', not starting or ending with '-'")
	}
	if err := validFlags(in.FeatureFlags); err != nil {
		return Organization{}, err
	}
	if err := validBranding(in.Branding); err != nil {
		return Organization{}, err
	}
	var domains []store.Domain
	for i, d := range in.Domains {
		dom, err := normalizeDomain(fmt.Sprintf("domains[%d]", i), d)
		if err != nil {
			return Organization{}, err
		}
		if !slices.ContainsFunc(domains, func(x store.Domain) bool { return x.Domain == dom }) {
			domains = append(domains, store.Domain{Domain: dom, Token: newSecret()})
		}
	}
	var out Organization
	run := s.run
	if in.Parent != "" { // a sub-organization joins its parent's tenant
		run = func(ctx context.Context, p Principal, action string, fn func(tx store.Tx, o *op) error) error {
			return s.runInTenant(ctx, p, action, in.Parent, fn)
		}
	}
	err = run(ctx, p, "organization.create", func(tx store.Tx, o *op) error {
		org := store.Org{
			ID: newID("org"), Slug: slug, Name: name, Status: store.StatusActive, Domains: domains,
			Branding: in.Branding, FeatureFlags: in.FeatureFlags, CreatedAt: o.now, UpdatedAt: o.now,
			Policy: store.OrgPolicy{DelegationApproval: in.Policy.RequireDelegationApproval,
				DelegationRequired: in.Policy.DelegationRequired, ImpersonationApproval: in.Policy.RequireImpersonationApproval},
		}
		var above []string // the new organization's ancestors, top first
		if in.Parent != "" {
			parent, err := resolveOrg(ctx, tx, in.Parent)
			if errors.Is(err, trellis.ErrNotFound) {
				return trellis.Invalid("parent", "organization %q does not exist", in.Parent)
			} else if err != nil {
				return err
			}
			if err := s.authorize(ctx, tx, p, parent, permManage); err != nil {
				if errors.Is(err, trellis.ErrNotFound) {
					return trellis.Invalid("parent", "organization %q does not exist", in.Parent)
				}
				return err
			}
			if above, err = s.path(ctx, tx, parent); err != nil {
				return err
			}
			if len(above)+1 > s.cfg.MaxDepth {
				return trellis.Rule("max_depth", "organizations nest at most %d levels; %s is at level %d", s.cfg.MaxDepth, parent.Slug, len(above))
			}
			org.Parent = parent.ID
		} else if err := s.requireProvider(ctx, p); err != nil {
			return fmt.Errorf("%w (a sub-organization needs parent)", err)
		}
		switch _, err := tx.GetOrgBySlug(ctx, slug); {
		case err == nil:
			return trellis.Conflict("slug_taken", "slug %q is taken", slug)
		case !errors.Is(err, trellis.ErrNotFound): // the lookup failed: not a free slug
			return err
		}
		if err := tx.InsertOrg(ctx, org); err != nil {
			return err
		}
		o.created = map[string]bool{org.ID: true}
		o.touch(s.orgTuples(org)...)
		o.touch(lineageTuples(org.ID, above)...)
		o.record(org.ID, "organization.create", "organization:"+org.ID, map[string]any{"slug": slug, "name": name, "parent": org.Parent})
		if org.Parent != "" {
			o.record(org.Parent, "organization.create_child", "organization:"+org.ID, map[string]any{"slug": slug})
		}
		var err error
		out, err = s.view(ctx, tx, org)
		return err
	})
	return out, err
}

// GetOrganization returns an organization the caller can see.
func (s *Service) GetOrganization(ctx context.Context, p Principal, ref string) (Organization, error) {
	var out Organization
	err := s.read(ctx, func(tx store.Tx) error {
		org, err := s.visibleOrg(ctx, tx, p, ref)
		if err != nil {
			return err
		}
		out, err = s.view(ctx, tx, org)
		return err
	})
	return out, err
}

// visibleOrg resolves ref and hides what the caller may not see.
func (s *Service) visibleOrg(ctx context.Context, tx store.Tx, p Principal, ref string) (store.Org, error) {
	org, err := resolveOrg(ctx, tx, ref)
	if err != nil {
		return store.Org{}, err
	}
	ok, err := s.visible(ctx, tx, p, org)
	if err != nil {
		return store.Org{}, err
	}
	if !ok {
		return store.Org{}, notFound("organization", ref)
	}
	return org, nil
}

// orgFor resolves ref and requires perm on it.
func (s *Service) orgFor(ctx context.Context, tx store.Tx, p Principal, ref, perm string) (store.Org, error) {
	org, err := resolveOrg(ctx, tx, ref)
	if err != nil {
		return store.Org{}, err
	}
	return org, s.authorize(ctx, tx, p, org, perm)
}

// ListOrgsQuery is GET /v1/organizations.
type ListOrgsQuery struct {
	Parent   string
	Query    string
	PageSize int
	Cursor   string
}

// ListOrganizations lists the organizations the caller can see.
func (s *Service) ListOrganizations(ctx context.Context, p Principal, q ListOrgsQuery) ([]Organization, string, error) {
	size, err := pageSize(q.PageSize)
	if err != nil {
		return nil, "", err
	}
	after, err := decodeCursor("cursor", q.Cursor)
	if err != nil {
		return nil, "", err
	}
	f := store.OrgFilter{Query: q.Query, Page: store.Page{After: after, Limit: size + 1}}
	provider, err := s.isProvider(ctx, p)
	if err != nil {
		return nil, "", err
	}
	if !provider {
		if f.IDs, err = s.visibleOrgIDs(ctx, p); err != nil {
			return nil, "", err
		}
	}
	out := []Organization{}
	next := ""
	err = s.read(ctx, func(tx store.Tx) error {
		if q.Parent != "" {
			parent, err := s.visibleOrg(ctx, tx, p, q.Parent)
			if errors.Is(err, trellis.ErrNotFound) {
				return nil // an unknown or hidden parent has no visible children
			} else if err != nil {
				return err
			}
			f.Parent = &parent.ID
		}
		orgs, err := tx.ListOrgs(ctx, f)
		if err != nil {
			return err
		}
		for i, o := range orgs {
			if i == size {
				next = encodeCursor(orgs[i-1].Slug)
				break
			}
			if ok, err := s.inScope(ctx, tx, p, o); err != nil || !ok {
				if err != nil {
					return err
				}
				continue
			}
			v, err := s.view(ctx, tx, o)
			if err != nil {
				return err
			}
			out = append(out, v)
		}
		return nil
	})
	return out, next, err
}

// visibleOrgIDs asks the graph which organizations a non-provider caller can
// access or govern.
func (s *Service) visibleOrgIDs(ctx context.Context, p Principal) ([]string, error) {
	ids := []string{}
	seen := map[string]bool{}
	for _, perm := range []string{permAccess, permAdminister} {
		if !keyAllows(p.Permissions, perm) {
			continue
		}
		cursor := ""
		for {
			page, err := s.graph.LookupResources(ctx, engine.LookupResourcesRequest{
				ResourceType: "organization", Permission: perm, Subject: p.Subject(), PageSize: 1000, Cursor: cursor,
			})
			if err != nil {
				return nil, err
			}
			for _, r := range page.Resources {
				if r.Permissionship == engine.HasPermission && !seen[r.ID] {
					seen[r.ID] = true
					ids = append(ids, r.ID)
				}
			}
			if page.NextCursor == "" || len(page.Resources) == 0 {
				break
			}
			cursor = page.NextCursor
		}
	}
	return ids, nil
}

// UpdateOrganization applies a merge patch. Name and feature flags need
// manage, branding manage_branding, status (suspend/reactivate) the power to
// govern the parent (provider admins for a top-level organization).
func (s *Service) UpdateOrganization(ctx context.Context, p Principal, ref string, in OrgPatch) (Organization, error) {
	var out Organization
	err := s.run(ctx, p, "organization.update", func(tx store.Tx, o *op) error {
		org, err := s.visibleOrg(ctx, tx, p, ref)
		if err != nil {
			return err
		}
		before := s.orgTuples(org)
		changed := map[string]any{}
		if in.Name != nil {
			if err := s.authorize(ctx, tx, p, org, permManage); err != nil {
				return err
			}
			if org.Name, err = validName("name", *in.Name); err != nil {
				return err
			}
			changed["name"] = org.Name
		}
		if in.FeatureFlags != nil {
			if err := s.authorize(ctx, tx, p, org, permManage); err != nil {
				return err
			}
			flags := maps.Clone(org.FeatureFlags)
			if flags == nil {
				flags = map[string]bool{}
			}
			for k, v := range in.FeatureFlags {
				if v == nil {
					delete(flags, k)
				} else {
					flags[k] = *v
				}
			}
			if err := validFlags(flags); err != nil {
				return err
			}
			org.FeatureFlags = flags
			changed["featureFlags"] = flags
		}
		if in.Branding != nil {
			if err := s.authorize(ctx, tx, p, org, permManageBrand); err != nil {
				return err
			}
			b := maps.Clone(org.Branding)
			if b == nil {
				b = map[string]string{}
			}
			for k, v := range in.Branding {
				if v == nil {
					delete(b, k)
				} else {
					b[k] = *v
				}
			}
			if err := validBranding(b); err != nil {
				return err
			}
			org.Branding = b
			changed["branding"] = b
		}
		if in.Policy != nil {
			policy, err := s.patchPolicy(ctx, tx, p, org, *in.Policy)
			if err != nil {
				return err
			}
			if policy != org.Policy {
				org.Policy = policy
				changed["policy"] = Policy{RequireDelegationApproval: policy.DelegationApproval,
					DelegationRequired: policy.DelegationRequired, RequireImpersonationApproval: policy.ImpersonationApproval}
			}
		}
		if in.Status != nil && *in.Status != org.Status {
			switch *in.Status {
			case store.StatusActive, store.StatusSuspended:
			default:
				return trellis.Invalid("status", "must be active or suspended, got %q", *in.Status)
			}
			if err := s.authorizeAbove(ctx, tx, p, org); err != nil {
				return err
			}
			org.Status = *in.Status
			action := "organization.suspend"
			if org.Status == store.StatusActive {
				action = "organization.reactivate"
			}
			o.record(org.ID, action, "organization:"+org.ID, nil)
		}
		if len(changed) == 0 && len(o.events) == 0 {
			out, err = s.view(ctx, tx, org) // nothing to change: no write, no event
			return err
		}
		org.UpdatedAt = o.now
		if err := tx.UpdateOrg(ctx, org); err != nil {
			return err
		}
		o.replace(before, s.orgTuples(org))
		if len(changed) > 0 {
			o.record(org.ID, "organization.update", "organization:"+org.ID, changed)
		}
		out, err = s.view(ctx, tx, org)
		return err
	})
	return out, err
}

// patchPolicy applies a policy patch. The approval switches need manage on
// the organization; mandatory delegation takes its autonomy away, so it is
// decided from above, and only while it has no administrators of its own.
func (s *Service) patchPolicy(ctx context.Context, tx store.Tx, p Principal, org store.Org, in PolicyPatch) (store.OrgPolicy, error) {
	policy := org.Policy
	if p.Impersonation != "" {
		return policy, fmt.Errorf("%w: an impersonation never changes an organization's policy", trellis.ErrForbidden)
	}
	if in.RequireDelegationApproval != nil || in.RequireImpersonationApproval != nil {
		if err := s.authorize(ctx, tx, p, org, permManage); err != nil {
			return policy, err
		}
		// the approvals an organization requires hold back those above it
		// (its parent's admins, partners): only its own administrators — or,
		// under mandatory delegation, whoever governs it — change them
		if p.Kind != KindProvider {
			if own, err := s.canApprove(ctx, tx, p, org); err != nil {
				return policy, err
			} else if !own {
				return policy, fmt.Errorf("%w: policy: only an administrator of organization %s itself changes its approval policy", trellis.ErrForbidden, org.Slug)
			}
		}
		if in.RequireDelegationApproval != nil {
			policy.DelegationApproval = *in.RequireDelegationApproval
		}
		if in.RequireImpersonationApproval != nil {
			policy.ImpersonationApproval = *in.RequireImpersonationApproval
		}
	}
	if in.DelegationRequired != nil && *in.DelegationRequired != policy.DelegationRequired {
		if err := s.authorizeAbove(ctx, tx, p, org); err != nil {
			return policy, err
		}
		if *in.DelegationRequired {
			if holder, err := s.ownAdministrator(ctx, tx, org); err != nil {
				return policy, err
			} else if holder != "" {
				return policy, trellis.Conflict("has_admins", "organization %s has administrators of its own (%s): remove their admin roles before requiring delegation", org.Slug, holder)
			}
		}
		policy.DelegationRequired = *in.DelegationRequired
	}
	return policy, nil
}

// ownAdministrator names a member, group or service account that holds an
// administering role (owner, admin, or a custom role with manage) in org.
func (s *Service) ownAdministrator(ctx context.Context, tx store.Tx, org store.Org) (string, error) {
	return roleHolder(ctx, tx, org.ID, func(roles []string) (bool, error) {
		rs, err := s.resolveRoles(ctx, tx, org, roles, "roles")
		if err != nil {
			return false, err
		}
		return slices.Contains(permissionsOf(rs), permManage), nil
	})
}

// authorizeAbove requires the power to govern org from above: govern on its
// parent (which survives the parent's suspension), or provider admin for a
// top-level organization. Suspension, deletion and moves are decided there.
func (s *Service) authorizeAbove(ctx context.Context, tx store.Tx, p Principal, org store.Org) error {
	if org.Parent == "" {
		return s.requireProvider(ctx, p)
	}
	parent, err := tx.GetOrg(ctx, org.Parent)
	if err != nil {
		return err
	}
	if err := s.authorize(ctx, tx, p, parent, permGovern); err != nil {
		if errors.Is(err, trellis.ErrNotFound) {
			return fmt.Errorf("%w: organization %s is administered from its parent", trellis.ErrForbidden, org.ID)
		}
		return err
	}
	return nil
}

// DeleteOrganization removes an organization; with cascade its whole subtree,
// memberships, groups, roles, service accounts and tuples. Without cascade an
// organization with children is a conflict.
func (s *Service) DeleteOrganization(ctx context.Context, p Principal, ref string, cascade bool) error {
	return s.run(ctx, p, "organization.delete", func(tx store.Tx, o *op) error {
		org, err := s.visibleOrg(ctx, tx, p, ref)
		if err != nil {
			return err
		}
		if err := s.authorizeAbove(ctx, tx, p, org); err != nil {
			return err
		}
		orgs, err := subtree(ctx, tx, org)
		if err != nil {
			return err
		}
		if len(orgs) > 1 && !cascade {
			return trellis.Conflict("has_children", "organization %s has %d sub-organizations; delete them first or pass cascade=true", org.Slug, len(orgs)-1)
		}
		// children before parents, so no row ever points at a deleted parent
		for i := len(orgs) - 1; i >= 0; i-- {
			if err := s.purgeOrg(ctx, tx, o, orgs[i]); err != nil {
				return err
			}
		}
		details := map[string]any{"slug": org.Slug, "cascade": cascade, "organizationsDeleted": len(orgs)}
		o.record(org.ID, "organization.delete", "organization:"+org.ID, details)
		if org.Parent != "" {
			o.record(org.Parent, "organization.delete_child", "organization:"+org.ID, details)
		}
		return nil
	})
}

// purgeOrg deletes one organization's rows and queues the removal of every
// tuple on or about it and its groups, roles and service accounts.
func (s *Service) purgeOrg(ctx context.Context, tx store.Tx, o *op, org store.Org) error {
	gone := func(typ, id string) {
		o.filters = append(o.filters,
			engine.RelationshipFilter{ResourceType: typ, ResourceID: id},
			engine.RelationshipFilter{Subject: &engine.SubjectFilter{Type: typ, ID: id}})
	}
	// role bindings of this organization are named after it and the roles it may use
	bindings, err := s.bindingIDs(ctx, tx, org)
	if err != nil {
		return err
	}
	for _, b := range bindings {
		o.filters = append(o.filters, engine.RelationshipFilter{ResourceType: "role_binding", ResourceID: b})
	}
	roles, err := tx.ListRoles(ctx, org.ID)
	if err != nil {
		return err
	}
	for _, r := range roles {
		if err := tx.DeleteRole(ctx, r.ID); err != nil {
			return err
		}
		gone("role", r.ID)
	}
	members, err := tx.ListMembers(ctx, org.ID, store.Page{})
	if err != nil {
		return err
	}
	for _, m := range members {
		if err := tx.DeleteMembership(ctx, org.ID, m.User); err != nil {
			return err
		}
	}
	groups, err := tx.ListGroups(ctx, org.ID)
	if err != nil {
		return err
	}
	for _, g := range groups {
		if err := tx.DeleteGroup(ctx, g.ID); err != nil {
			return err
		}
		gone("group", g.ID)
	}
	sas, err := tx.ListServiceAccounts(ctx, org.ID)
	if err != nil {
		return err
	}
	for _, sa := range sas {
		if err := tx.DeleteServiceAccount(ctx, sa.ID); err != nil {
			return err
		}
		gone("service_account", sa.ID)
	}
	invs, err := tx.ListInvitations(ctx, org.ID)
	if err != nil {
		return err
	}
	for _, inv := range invs {
		if inv.AcceptedAt == nil && inv.RevokedAt == nil {
			inv.RevokedAt = &o.now
			if err := tx.UpdateInvitation(ctx, inv); err != nil {
				return err
			}
		}
	}
	delegations, err := tx.ListDelegations(ctx, org.ID)
	if err != nil {
		return err
	}
	for _, d := range delegations {
		if _, err := s.revokeTree(ctx, tx, o, d, ""); err != nil {
			return err
		}
	}
	imps, err := tx.ListImpersonations(ctx, org.ID)
	if err != nil {
		return err
	}
	for _, im := range imps {
		if im.Status != store.ImpersonationEnded {
			im.Status, im.EndedAt, im.EndedBy = store.ImpersonationEnded, &o.now, o.p.Actor()
			if err := tx.UpdateImpersonation(ctx, im); err != nil {
				return err
			}
		}
		gone("impersonation", im.ID)
	}
	gone("organization", org.ID)
	return tx.DeleteOrg(ctx, org.ID)
}
