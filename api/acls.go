package api

import (
	"net/http"
	"sort"

	"github.com/labstack/echo/v4"

	"github.com/lockd/lockd/api/wire"
	"github.com/lockd/lockd/lockservice"
)

// ACL routes (see doc.go, "Security"). Rules are set and deleted through
// the log, so every replica resolves them alike; managing the rules at a
// prefix needs the admin permission there.

// aclPrefix returns the prefix that follows /v1/acls/ (a node path of the
// cell; one trailing "/" is dropped).
func (s *Server) aclPrefix(c echo.Context) (string, error) {
	return lockservice.NormalizePrefix(s.cell, "/"+c.Param("*"))
}

// checkRulePrincipal accepts "*", or, when the cell has tokens, only the
// name of one of them (a rule for a name nobody has is a typo).
func (s *Server) checkRulePrincipal(name string) error {
	if err := lockservice.ValidatePrincipal(name, true); err != nil {
		return err
	}
	if name != lockservice.Everyone && !s.auth.open && s.auth.byName[name] == nil {
		return invalid("principal %q is not a configured token", name)
	}
	return nil
}

// PUT /v1/acls/{prefix} {"principal", "perms"}
func (s *Server) putACL(c echo.Context) error {
	prefix, err := s.aclPrefix(c)
	if err != nil {
		return err
	}
	var req wire.SetACLRequest
	if err := decodeJSON(body(c), &req, false); err != nil {
		return err
	}
	if req.Perms == nil {
		return invalid("perms is required ([] is a rule that denies)")
	}
	perms, err := lockservice.ParsePerms(*req.Perms)
	if err != nil {
		return err
	}
	if err := s.checkRulePrincipal(req.Principal); err != nil {
		return err
	}
	if err := s.authorize(c, prefix, lockservice.PermAdmin); err != nil {
		return err
	}
	cmd, err := validated(s.cell, lockservice.Command{Kind: lockservice.KindSetACL, Path: prefix,
		Principal: req.Principal, Perms: perms.Strings()})
	if err != nil {
		return err
	}
	r, err := s.svc.Propose(c.Request().Context(), cmd)
	if err != nil {
		return err
	}
	setIndex(c, r.Index)
	return c.JSON(http.StatusOK, wire.ACLResponse{ACL: wire.ACLRule{
		Prefix: prefix, Principal: req.Principal, Perms: perms.Strings(), Index: r.Index, Source: "log"}})
}

// DELETE /v1/acls/{prefix}?principal=P
func (s *Server) deleteACL(c echo.Context) error {
	prefix, err := s.aclPrefix(c)
	if err != nil {
		return err
	}
	who := c.QueryParam("principal")
	if err := lockservice.ValidatePrincipal(who, true); err != nil {
		return invalid("query parameter principal: %s", s.toError(err).Message)
	}
	if err := s.authorize(c, prefix, lockservice.PermAdmin); err != nil {
		return err
	}
	ctx := c.Request().Context()
	if !s.m.HasACLRule(prefix, who) {
		// Confirm on the current state before answering not_found (a
		// follower may lag), so a missing rule never takes a log slot.
		if err := s.svc.Read(ctx); err != nil {
			return err
		}
		if !s.m.HasACLRule(prefix, who) {
			return newError(http.StatusNotFound, wire.CodeNotFound, "no replicated ACL rule for %s at %s", who, prefix)
		}
	}
	r, err := s.svc.Propose(ctx, lockservice.Command{Kind: lockservice.KindDeleteACL, Path: prefix, Principal: who})
	if err != nil {
		return err
	}
	setIndex(c, r.Index)
	return c.NoContent(http.StatusNoContent)
}

// GET /v1/acls (every rule; administrators only)
func (s *Server) listACLs(c echo.Context) error {
	return s.answerACLs(c, s.root(), true)
}

// GET /v1/acls/{prefix}[?principal=P]
func (s *Server) getACLs(c echo.Context) error {
	prefix, err := s.aclPrefix(c)
	if err != nil {
		return err
	}
	if err := s.authorize(c, prefix, lockservice.PermAdmin); err != nil {
		return err
	}
	return s.answerACLs(c, prefix, false)
}

func (s *Server) answerACLs(c echo.Context, prefix string, all bool) error {
	who := c.QueryParam("principal")
	if who != "" {
		if err := lockservice.ValidatePrincipal(who, false); err != nil {
			return invalid("query parameter principal: %s", s.toError(err).Message)
		}
	}
	if err := s.readBarrier(c); err != nil {
		return err
	}
	out := []wire.ACLRule{}
	under := prefix
	if all {
		under = ""
	}
	for _, r := range s.m.ACLRules(under) {
		out = append(out, wire.ACLRule{Prefix: r.Prefix, Principal: r.Principal, Perms: r.Perms.Strings(), Index: r.Index, Source: "log"})
	}
	for _, r := range s.auth.static.Rules() {
		if all || r.Prefix == prefix || len(r.Prefix) > len(prefix) && r.Prefix[:len(prefix)+1] == prefix+"/" {
			out = append(out, wire.ACLRule{Prefix: r.Prefix, Principal: r.Principal, Perms: r.Perms.Strings(), Source: "config"})
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Prefix != out[j].Prefix {
			return out[i].Prefix < out[j].Prefix
		}
		if out[i].Principal != out[j].Principal {
			return out[i].Principal < out[j].Principal
		}
		return out[i].Source == "log" && out[j].Source != "log" // the rule in force first
	})
	resp := wire.ACLsResponse{ACLs: out}
	if who != "" {
		p := s.auth.byName[who]
		if p == nil {
			p = &principal{name: who, state: s.auth.anonymous.state}
		}
		resp.Effective = &wire.Effective{Path: prefix, Principal: who, Perms: s.perms(p, prefix).Strings(),
			Admin: s.isAdmin(p), ACLGeneration: s.m.ACLGeneration(prefix)}
	}
	return c.JSON(http.StatusOK, resp)
}
