package directory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/trellis-iam/trellis"
	"github.com/trellis-iam/trellis/store"
)

// domainChallengePrefix names the DNS TXT record that proves control of a domain.
const domainChallengePrefix = "_trellis-challenge."

// DomainClaim is a claimed domain with the DNS record that verifies it.
type DomainClaim struct {
	DomainView
	Organization string    `json:"organization"`
	TXTRecord    TXTRecord `json:"txtRecord"`
}

// TXTRecord is the DNS record to publish.
type TXTRecord struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Value string `json:"value"`
}

// VerifyDomain is the body of POST …/domains/{domain}/verify.
type VerifyDomain struct {
	Method string `json:"method"` // dns (default) | manual
	Reason string `json:"reason"`
}

func claimOf(org store.Org, d store.Domain) DomainClaim {
	return DomainClaim{
		DomainView:   DomainView{Domain: d.Domain, Verified: d.Verified, Method: d.Method, VerifiedAt: d.VerifiedAt},
		Organization: org.ID,
		TXTRecord:    TXTRecord{Name: domainChallengePrefix + d.Domain, Type: "TXT", Value: "trellis-domain-verification=" + d.Token},
	}
}

// ClaimDomain adds an unverified domain to org (or returns the existing claim).
func (s *Service) ClaimDomain(ctx context.Context, p Principal, ref, domain string) (DomainClaim, bool, error) {
	dom, err := normalizeDomain("domain", domain)
	if err != nil {
		return DomainClaim{}, false, err
	}
	var out DomainClaim
	created := false
	err = s.run(ctx, p, "domain.claim", func(tx store.Tx, o *op) error {
		org, err := s.orgFor(ctx, tx, p, ref, permManageSSO)
		if err != nil {
			return err
		}
		if i := slices.IndexFunc(org.Domains, func(d store.Domain) bool { return d.Domain == dom }); i >= 0 {
			out = claimOf(org, org.Domains[i])
			return nil
		}
		d := store.Domain{Domain: dom, Token: newSecret()}
		org.Domains = append(org.Domains, d)
		org.UpdatedAt = o.now
		if err := tx.UpdateOrg(ctx, org); err != nil {
			return err
		}
		o.record(org.ID, "domain.claim", "domain:"+dom, nil)
		out, created = claimOf(org, d), true
		return nil
	})
	return out, created, err
}

// VerifyDomainClaim verifies a claimed domain: by its DNS TXT record, or
// manually (provider admins only, with a reason, audited). A domain verified
// by another organization is a conflict.
func (s *Service) VerifyDomainClaim(ctx context.Context, p Principal, ref, domain string, in VerifyDomain) (DomainClaim, error) {
	method := in.Method
	if method == "" {
		method = "dns"
	}
	if method != "dns" && method != "manual" {
		return DomainClaim{}, trellis.Invalid("method", "must be dns or manual, got %q", in.Method)
	}
	if method == "manual" && strings.TrimSpace(in.Reason) == "" {
		return DomainClaim{}, trellis.Invalid("reason", "is required for manual verification")
	}
	dom := strings.ToLower(strings.TrimSpace(domain))
	var out DomainClaim
	err := s.run(ctx, p, "domain.verify", func(tx store.Tx, o *op) error {
		org, err := s.orgFor(ctx, tx, p, ref, permManageSSO)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(org.Domains, func(d store.Domain) bool { return d.Domain == dom })
		if i < 0 {
			return notFound("domain", dom)
		}
		d := org.Domains[i]
		if d.Verified {
			out = claimOf(org, d)
			return nil
		}
		if other, err := tx.OrgByVerifiedDomain(ctx, dom); err == nil && other.ID != org.ID {
			return trellis.Conflict("domain_taken", "domain %s is verified by another organization", dom)
		} else if err != nil && !errors.Is(err, trellis.ErrNotFound) {
			return err
		}
		switch method {
		case "manual":
			if err := s.requireProvider(ctx, p); err != nil {
				return fmt.Errorf("%w (manual verification)", err)
			}
		case "dns":
			want := claimOf(org, d).TXTRecord
			values, err := s.cfg.LookupTXT(ctx, want.Name)
			if err != nil || !slices.Contains(values, want.Value) {
				return trellis.Rule("domain_unverified", "no TXT record %q with value %q was found", want.Name, want.Value)
			}
		}
		d.Verified, d.Method, d.VerifiedAt = true, method, &o.now
		org.Domains[i] = d
		org.UpdatedAt = o.now
		if err := tx.UpdateOrg(ctx, org); err != nil {
			return err
		}
		details := map[string]any{"method": method}
		if method == "manual" {
			details["reason"] = in.Reason
		}
		o.record(org.ID, "domain.verify", "domain:"+dom, details)
		out = claimOf(org, d)
		return nil
	})
	return out, err
}

// RemoveDomain drops a domain claim.
func (s *Service) RemoveDomain(ctx context.Context, p Principal, ref, domain string) error {
	dom := strings.ToLower(strings.TrimSpace(domain))
	return s.run(ctx, p, "domain.remove", func(tx store.Tx, o *op) error {
		org, err := s.orgFor(ctx, tx, p, ref, permManage)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(org.Domains, func(d store.Domain) bool { return d.Domain == dom })
		if i < 0 {
			return notFound("domain", dom)
		}
		org.Domains = slices.Delete(org.Domains, i, i+1)
		org.UpdatedAt = o.now
		if err := tx.UpdateOrg(ctx, org); err != nil {
			return err
		}
		o.record(org.ID, "domain.remove", "domain:"+dom, nil)
		return nil
	})
}
