package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/audit"
	"github.com/trellis-iam/trellis/directory"
)

func (s *Server) mountDirectory(g routes) {
	g.POST("/organizations", s.createOrg)
	g.GET("/organizations", s.listOrgs)
	g.GET("/organizations/:org", s.getOrg)
	g.PATCH("/organizations/:org", s.patchOrg)
	g.DELETE("/organizations/:org", s.deleteOrg)
	g.POST("/organizations/:org/move", s.moveOrg)
	g.POST("/organizations/:org/domains", s.claimDomain)
	g.DELETE("/organizations/:org/domains/:domain", s.removeDomain)
	g.POST("/organizations/:org/domains/:domain/verify", s.verifyDomain)

	g.POST("/users", s.createUser)
	g.GET("/users", s.findUsers)
	g.GET("/users/:user", s.getUser)
	g.GET("/users/:user/organizations", s.userOrgs)

	g.GET("/organizations/:org/members", s.listMembers)
	g.GET("/organizations/:org/members/:user", s.getMember)
	g.PUT("/organizations/:org/members/:user", s.putMember)
	g.DELETE("/organizations/:org/members/:user", s.removeMember)

	g.GET("/organizations/:org/groups", s.listGroups)
	g.POST("/organizations/:org/groups", s.createGroup)
	g.GET("/organizations/:org/groups/:group", s.getGroup)
	g.PATCH("/organizations/:org/groups/:group", s.patchGroup)
	g.DELETE("/organizations/:org/groups/:group", s.deleteGroup)
	g.GET("/organizations/:org/groups/:group/members", s.listGroupMembers)
	g.PUT("/organizations/:org/groups/:group/members/:member", s.putGroupMember)
	g.DELETE("/organizations/:org/groups/:group/members/:member", s.removeGroupMember)

	g.GET("/organizations/:org/roles", s.listRoles)
	g.POST("/organizations/:org/roles", s.createRole)
	g.GET("/organizations/:org/roles/:role", s.getRole)
	g.PATCH("/organizations/:org/roles/:role", s.patchRole)
	g.DELETE("/organizations/:org/roles/:role", s.deleteRole)

	g.GET("/organizations/:org/invitations", s.listInvitations)
	g.POST("/organizations/:org/invitations", s.invite)
	g.DELETE("/organizations/:org/invitations/:invitation", s.revokeInvitation)

	g.GET("/organizations/:org/service-accounts", s.listServiceAccounts)
	g.POST("/organizations/:org/service-accounts", s.createServiceAccount)
	g.GET("/organizations/:org/service-accounts/:sa", s.getServiceAccount)
	g.PATCH("/organizations/:org/service-accounts/:sa", s.patchServiceAccount)
	g.DELETE("/organizations/:org/service-accounts/:sa", s.deleteServiceAccount)
	g.GET("/organizations/:org/service-accounts/:sa/keys", s.listKeys)
	g.POST("/organizations/:org/service-accounts/:sa/keys", s.createKey)
	g.POST("/organizations/:org/service-accounts/:sa/keys/:key/rotate", s.rotateKey)
	g.DELETE("/organizations/:org/service-accounts/:sa/keys/:key", s.revokeKey)

	g.GET("/organizations/:org/audit", s.listAudit)
	g.GET("/organizations/:org/audit/verify", s.verifyAudit)
	g.GET("/organizations/:org/audit/export", s.exportAudit)
	g.GET("/audit", s.listAllAudit)
	g.GET("/audit/verify", s.verifyPlatformAudit)

	g.POST("/tokens", s.issueToken)

	g.GET("/organizations/:org/delegations", s.listDelegations)
	g.POST("/organizations/:org/delegations", s.delegate)
	g.GET("/delegations/:delegation", s.getDelegation)
	g.POST("/delegations/:delegation/approve", s.approveDelegation)
	g.DELETE("/delegations/:delegation", s.revokeDelegation)

	g.POST("/impersonations", s.impersonate)
	g.GET("/organizations/:org/impersonations", s.listImpersonations)
	g.GET("/impersonations/:impersonation", s.getImpersonation)
	g.POST("/impersonations/:impersonation/approve", s.approveImpersonation)
	g.POST("/impersonations/:impersonation/end", s.endImpersonation)
	g.POST("/impersonations/:impersonation/token", s.impersonationToken)
}

func principal(c echo.Context) directory.Principal {
	if pc, ok := c.(*principalContext); ok {
		return pc.p
	}
	return directory.Principal{}
}

// queryInt reads an optional integer query parameter.
func queryInt(c echo.Context, name string) (int, error) {
	v := c.QueryParam(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, trellis.Invalid(name, "must be an integer, got %q", v)
	}
	return n, nil
}

// queryTime reads an optional RFC 3339 query parameter.
func queryTime(c echo.Context, name string) (*time.Time, error) {
	v := c.QueryParam(name)
	if v == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return nil, trellis.Invalid(name, "must be an RFC 3339 time, got %q", v)
	}
	return &t, nil
}

// bindOptional decodes a JSON body when there is one.
func bindOptional(c echo.Context, v any) error {
	if c.Request().ContentLength == 0 {
		return nil
	}
	return bind(c, v)
}

func created[T any](c echo.Context, v T, err error) error {
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, v)
}

func ok[T any](c echo.Context, v T, err error) error {
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, v)
}

func noContent(c echo.Context, err error) error {
	if err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// --- organizations ---

func (s *Server) createOrg(c echo.Context) error {
	var in directory.CreateOrg
	if err := bind(c, &in); err != nil {
		return err
	}
	org, err := s.dir.CreateOrganization(c.Request().Context(), principal(c), in)
	return created(c, org, err)
}

func (s *Server) listOrgs(c echo.Context) error {
	size, err := queryInt(c, "pageSize")
	if err != nil {
		return err
	}
	orgs, next, err := s.dir.ListOrganizations(c.Request().Context(), principal(c), directory.ListOrgsQuery{
		Parent: c.QueryParam("parent"), Query: c.QueryParam("q"), PageSize: size, Cursor: c.QueryParam("cursor"),
	})
	return ok(c, map[string]any{"organizations": orgs, "nextCursor": next}, err)
}

func (s *Server) getOrg(c echo.Context) error {
	org, err := s.dir.GetOrganization(c.Request().Context(), principal(c), c.Param("org"))
	return ok(c, org, err)
}

func (s *Server) patchOrg(c echo.Context) error {
	var in directory.OrgPatch
	if err := bind(c, &in); err != nil {
		return err
	}
	org, err := s.dir.UpdateOrganization(c.Request().Context(), principal(c), c.Param("org"), in)
	return ok(c, org, err)
}

func (s *Server) deleteOrg(c echo.Context) error {
	cascade := false
	if v := c.QueryParam("cascade"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return trellis.Invalid("cascade", "must be true or false, got %q", v)
		}
		cascade = b
	}
	return noContent(c, s.dir.DeleteOrganization(c.Request().Context(), principal(c), c.Param("org"), cascade))
}

func (s *Server) moveOrg(c echo.Context) error {
	var in directory.MoveOrg
	if err := bind(c, &in); err != nil {
		return err
	}
	res, err := s.dir.MoveOrganization(c.Request().Context(), principal(c), c.Param("org"), in)
	return ok(c, res, err)
}

func (s *Server) claimDomain(c echo.Context) error {
	var in struct {
		Domain string `json:"domain"`
	}
	if err := bind(c, &in); err != nil {
		return err
	}
	claim, isNew, err := s.dir.ClaimDomain(c.Request().Context(), principal(c), c.Param("org"), in.Domain)
	if err != nil || !isNew {
		return ok(c, claim, err)
	}
	return created(c, claim, nil)
}

func (s *Server) verifyDomain(c echo.Context) error {
	var in directory.VerifyDomain
	if err := bindOptional(c, &in); err != nil {
		return err
	}
	claim, err := s.dir.VerifyDomainClaim(c.Request().Context(), principal(c), c.Param("org"), c.Param("domain"), in)
	return ok(c, claim, err)
}

func (s *Server) removeDomain(c echo.Context) error {
	return noContent(c, s.dir.RemoveDomain(c.Request().Context(), principal(c), c.Param("org"), c.Param("domain")))
}

// --- users and memberships ---

func (s *Server) createUser(c echo.Context) error {
	var in directory.CreateUser
	if err := bind(c, &in); err != nil {
		return err
	}
	u, err := s.dir.CreateUser(c.Request().Context(), principal(c), in)
	return created(c, u, err)
}

func (s *Server) findUsers(c echo.Context) error {
	users, err := s.dir.FindUsers(c.Request().Context(), principal(c), c.QueryParam("email"))
	return ok(c, map[string]any{"users": users}, err)
}

func (s *Server) getUser(c echo.Context) error {
	u, err := s.dir.GetUser(c.Request().Context(), principal(c), c.Param("user"))
	return ok(c, u, err)
}

func (s *Server) userOrgs(c echo.Context) error {
	ms, err := s.dir.UserOrganizations(c.Request().Context(), principal(c), c.Param("user"))
	return ok(c, map[string]any{"memberships": ms}, err)
}

func (s *Server) listMembers(c echo.Context) error {
	size, err := queryInt(c, "pageSize")
	if err != nil {
		return err
	}
	ms, next, err := s.dir.ListMembers(c.Request().Context(), principal(c), c.Param("org"), size, c.QueryParam("cursor"))
	return ok(c, map[string]any{"members": ms, "nextCursor": next}, err)
}

func (s *Server) getMember(c echo.Context) error {
	m, err := s.dir.GetMember(c.Request().Context(), principal(c), c.Param("org"), c.Param("user"))
	return ok(c, m, err)
}

func (s *Server) putMember(c echo.Context) error {
	var in directory.PutMember
	if err := bindOptional(c, &in); err != nil {
		return err
	}
	m, isNew, err := s.dir.PutMember(c.Request().Context(), principal(c), c.Param("org"), c.Param("user"), in)
	if err != nil || !isNew {
		return ok(c, m, err)
	}
	return created(c, m, nil)
}

func (s *Server) removeMember(c echo.Context) error {
	return noContent(c, s.dir.RemoveMember(c.Request().Context(), principal(c), c.Param("org"), c.Param("user")))
}

// --- groups ---

func (s *Server) listGroups(c echo.Context) error {
	gs, err := s.dir.ListGroups(c.Request().Context(), principal(c), c.Param("org"))
	return ok(c, map[string]any{"groups": gs}, err)
}

func (s *Server) createGroup(c echo.Context) error {
	var in directory.GroupInput
	if err := bind(c, &in); err != nil {
		return err
	}
	g, err := s.dir.CreateGroup(c.Request().Context(), principal(c), c.Param("org"), in)
	return created(c, g, err)
}

func (s *Server) getGroup(c echo.Context) error {
	g, err := s.dir.GetGroup(c.Request().Context(), principal(c), c.Param("org"), c.Param("group"))
	return ok(c, g, err)
}

func (s *Server) patchGroup(c echo.Context) error {
	var in directory.GroupInput
	if err := bind(c, &in); err != nil {
		return err
	}
	g, err := s.dir.UpdateGroup(c.Request().Context(), principal(c), c.Param("org"), c.Param("group"), in)
	return ok(c, g, err)
}

func (s *Server) deleteGroup(c echo.Context) error {
	return noContent(c, s.dir.DeleteGroup(c.Request().Context(), principal(c), c.Param("org"), c.Param("group")))
}

func (s *Server) listGroupMembers(c echo.Context) error {
	ms, err := s.dir.ListGroupMembers(c.Request().Context(), principal(c), c.Param("org"), c.Param("group"))
	return ok(c, map[string]any{"members": ms}, err)
}

func (s *Server) putGroupMember(c echo.Context) error {
	m, err := s.dir.PutGroupMember(c.Request().Context(), principal(c), c.Param("org"), c.Param("group"), c.Param("member"))
	return ok(c, m, err)
}

func (s *Server) removeGroupMember(c echo.Context) error {
	return noContent(c, s.dir.RemoveGroupMember(c.Request().Context(), principal(c), c.Param("org"), c.Param("group"), c.Param("member")))
}

// --- roles ---

func (s *Server) listRoles(c echo.Context) error {
	rs, err := s.dir.ListRoles(c.Request().Context(), principal(c), c.Param("org"))
	return ok(c, map[string]any{"roles": rs}, err)
}

func (s *Server) createRole(c echo.Context) error {
	var in directory.RoleInput
	if err := bind(c, &in); err != nil {
		return err
	}
	r, err := s.dir.CreateRole(c.Request().Context(), principal(c), c.Param("org"), in)
	return created(c, r, err)
}

func (s *Server) getRole(c echo.Context) error {
	r, err := s.dir.GetRole(c.Request().Context(), principal(c), c.Param("org"), c.Param("role"))
	return ok(c, r, err)
}

func (s *Server) patchRole(c echo.Context) error {
	var in directory.RoleInput
	if err := bind(c, &in); err != nil {
		return err
	}
	r, err := s.dir.UpdateRole(c.Request().Context(), principal(c), c.Param("org"), c.Param("role"), in)
	return ok(c, r, err)
}

func (s *Server) deleteRole(c echo.Context) error {
	return noContent(c, s.dir.DeleteRole(c.Request().Context(), principal(c), c.Param("org"), c.Param("role")))
}

// --- invitations ---

func (s *Server) listInvitations(c echo.Context) error {
	invs, err := s.dir.ListInvitations(c.Request().Context(), principal(c), c.Param("org"))
	return ok(c, map[string]any{"invitations": invs}, err)
}

func (s *Server) invite(c echo.Context) error {
	var in directory.CreateInvitation
	if err := bind(c, &in); err != nil {
		return err
	}
	inv, err := s.dir.Invite(c.Request().Context(), principal(c), c.Param("org"), in)
	return created(c, inv, err)
}

func (s *Server) revokeInvitation(c echo.Context) error {
	return noContent(c, s.dir.RevokeInvitation(c.Request().Context(), principal(c), c.Param("org"), c.Param("invitation")))
}

// acceptInvitation is mounted outside the authenticated group: the invitation
// token is the credential. A bearer token, when sent, must be valid and must
// belong to the invited user.
func (s *Server) acceptInvitation(c echo.Context) error {
	var p *directory.Principal
	if c.Request().Header.Get(echo.HeaderAuthorization) != "" {
		got, key, err := s.principalOf(c)
		if err != nil {
			return err
		}
		if key != nil {
			return fmt.Errorf("%w: API keys cannot accept invitations", trellis.ErrForbidden)
		}
		p = &got
	}
	var in directory.AcceptInvitation
	if err := bindOptional(c, &in); err != nil {
		return err
	}
	m, err := s.dir.Accept(c.Request().Context(), p, c.Param("token"), in)
	return ok(c, m, err)
}

// --- service accounts and API keys ---

func (s *Server) listServiceAccounts(c echo.Context) error {
	sas, err := s.dir.ListServiceAccounts(c.Request().Context(), principal(c), c.Param("org"))
	return ok(c, map[string]any{"serviceAccounts": sas}, err)
}

func (s *Server) createServiceAccount(c echo.Context) error {
	var in directory.ServiceAccountInput
	if err := bind(c, &in); err != nil {
		return err
	}
	sa, err := s.dir.CreateServiceAccount(c.Request().Context(), principal(c), c.Param("org"), in)
	return created(c, sa, err)
}

func (s *Server) getServiceAccount(c echo.Context) error {
	sa, err := s.dir.GetServiceAccount(c.Request().Context(), principal(c), c.Param("org"), c.Param("sa"))
	return ok(c, sa, err)
}

func (s *Server) patchServiceAccount(c echo.Context) error {
	var in directory.ServiceAccountInput
	if err := bind(c, &in); err != nil {
		return err
	}
	sa, err := s.dir.UpdateServiceAccount(c.Request().Context(), principal(c), c.Param("org"), c.Param("sa"), in)
	return ok(c, sa, err)
}

func (s *Server) deleteServiceAccount(c echo.Context) error {
	return noContent(c, s.dir.DeleteServiceAccount(c.Request().Context(), principal(c), c.Param("org"), c.Param("sa")))
}

func (s *Server) listKeys(c echo.Context) error {
	keys, err := s.dir.ListKeys(c.Request().Context(), principal(c), c.Param("org"), c.Param("sa"))
	return ok(c, map[string]any{"keys": keys}, err)
}

func (s *Server) createKey(c echo.Context) error {
	var in directory.CreateAPIKey
	if err := bind(c, &in); err != nil {
		return err
	}
	k, err := s.dir.CreateKey(c.Request().Context(), principal(c), c.Param("org"), c.Param("sa"), in)
	return created(c, k, err)
}

func (s *Server) rotateKey(c echo.Context) error {
	var in directory.RotateAPIKey
	if err := bindOptional(c, &in); err != nil {
		return err
	}
	k, err := s.dir.RotateKey(c.Request().Context(), principal(c), c.Param("org"), c.Param("sa"), c.Param("key"), in)
	return created(c, k, err)
}

func (s *Server) revokeKey(c echo.Context) error {
	return noContent(c, s.dir.RevokeKey(c.Request().Context(), principal(c), c.Param("org"), c.Param("sa"), c.Param("key")))
}

// --- audit ---

func auditQuery(c echo.Context) (directory.AuditQuery, error) {
	q := directory.AuditQuery{Organization: c.QueryParam("organization"), Actor: c.QueryParam("actor"), Action: c.QueryParam("action"), Cursor: c.QueryParam("cursor")}
	var err error
	if q.Since, err = queryTime(c, "since"); err != nil {
		return q, err
	}
	if q.Until, err = queryTime(c, "until"); err != nil {
		return q, err
	}
	q.PageSize, err = queryInt(c, "pageSize")
	return q, err
}

func (s *Server) listAudit(c echo.Context) error {
	q, err := auditQuery(c)
	if err != nil {
		return err
	}
	events, next, err := s.dir.ListAudit(c.Request().Context(), principal(c), c.Param("org"), q)
	return ok(c, map[string]any{"events": events, "nextCursor": next}, err)
}

func (s *Server) listAllAudit(c echo.Context) error {
	q, err := auditQuery(c)
	if err != nil {
		return err
	}
	events, next, err := s.dir.ListAllAudit(c.Request().Context(), principal(c), q)
	return ok(c, map[string]any{"events": events, "nextCursor": next}, err)
}

func (s *Server) verifyAudit(c echo.Context) error {
	v, err := s.dir.VerifyAudit(c.Request().Context(), principal(c), c.Param("org"))
	return ok(c, v, err)
}

// verifyPlatformAudit verifies the platform chain (events on no organization).
func (s *Server) verifyPlatformAudit(c echo.Context) error {
	v, err := s.dir.VerifyPlatformAudit(c.Request().Context(), principal(c))
	return ok(c, v, err)
}

func (s *Server) exportAudit(c echo.Context) error {
	events, err := s.dir.AuditChain(c.Request().Context(), principal(c), c.Param("org"))
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderContentType, "application/x-ndjson")
	c.Response().Header().Set("Content-Disposition", `attachment; filename="audit-`+c.Param("org")+`.ndjson"`)
	c.Response().WriteHeader(http.StatusOK)
	return audit.WriteNDJSON(c.Response(), events)
}

// --- tokens ---

func (s *Server) issueToken(c echo.Context) error {
	var in struct {
		Subject      string          `json:"subject"`
		Organization string          `json:"organization"`
		TTL          json.RawMessage `json:"ttl"`
	}
	if err := bind(c, &in); err != nil {
		return err
	}
	ttl, err := parseTTL(in.TTL)
	if err != nil {
		return err
	}
	tok, err := s.dir.IssueToken(c.Request().Context(), principal(c), directory.IssueToken{Subject: in.Subject, Organization: in.Organization, TTL: ttl})
	return created(c, tok, err)
}

// parseTTL accepts seconds (a number) or a duration string ("15m").
func parseTTL(raw json.RawMessage) (time.Duration, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	var secs json.Number
	if err := json.Unmarshal(raw, &secs); err == nil {
		n, err := secs.Int64()
		if err != nil || n <= 0 {
			return 0, trellis.Invalid("ttl", "must be a positive number of seconds or a duration like \"15m\"")
		}
		return time.Duration(n) * time.Second, nil
	}
	var str string
	if err := json.Unmarshal(raw, &str); err == nil {
		d, err := time.ParseDuration(str)
		if err != nil || d <= 0 {
			return 0, trellis.Invalid("ttl", "must be a positive number of seconds or a duration like \"15m\"")
		}
		return d, nil
	}
	return 0, trellis.Invalid("ttl", "must be a positive number of seconds or a duration like \"15m\"")
}

// --- delegation and impersonation ---

func (s *Server) listDelegations(c echo.Context) error {
	ds, err := s.dir.ListDelegations(c.Request().Context(), principal(c), c.Param("org"))
	return ok(c, map[string]any{"delegations": ds}, err)
}

func (s *Server) delegate(c echo.Context) error {
	var in directory.CreateDelegation
	if err := bind(c, &in); err != nil {
		return err
	}
	d, err := s.dir.Delegate(c.Request().Context(), principal(c), c.Param("org"), in)
	return created(c, d, err)
}

func (s *Server) getDelegation(c echo.Context) error {
	d, err := s.dir.GetDelegation(c.Request().Context(), principal(c), c.Param("delegation"))
	return ok(c, d, err)
}

func (s *Server) approveDelegation(c echo.Context) error {
	d, err := s.dir.ApproveDelegation(c.Request().Context(), principal(c), c.Param("delegation"))
	return ok(c, d, err)
}

func (s *Server) revokeDelegation(c echo.Context) error {
	d, err := s.dir.RevokeDelegation(c.Request().Context(), principal(c), c.Param("delegation"))
	return ok(c, d, err)
}

func (s *Server) impersonate(c echo.Context) error {
	var in directory.CreateImpersonation
	if err := bind(c, &in); err != nil {
		return err
	}
	im, err := s.dir.Impersonate(c.Request().Context(), principal(c), in)
	return created(c, im, err)
}

func (s *Server) listImpersonations(c echo.Context) error {
	ims, err := s.dir.ListImpersonations(c.Request().Context(), principal(c), c.Param("org"))
	return ok(c, map[string]any{"impersonations": ims}, err)
}

func (s *Server) getImpersonation(c echo.Context) error {
	im, err := s.dir.GetImpersonation(c.Request().Context(), principal(c), c.Param("impersonation"))
	return ok(c, im, err)
}

func (s *Server) approveImpersonation(c echo.Context) error {
	im, err := s.dir.ApproveImpersonation(c.Request().Context(), principal(c), c.Param("impersonation"))
	return ok(c, im, err)
}

func (s *Server) endImpersonation(c echo.Context) error {
	im, err := s.dir.EndImpersonation(c.Request().Context(), principal(c), c.Param("impersonation"))
	return ok(c, im, err)
}

func (s *Server) impersonationToken(c echo.Context) error {
	tok, err := s.dir.ImpersonationToken(c.Request().Context(), principal(c), c.Param("impersonation"))
	return created(c, tok, err)
}
