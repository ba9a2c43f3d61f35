package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// client is the CLI's view of a running server: --url, and the key from
// TRELLIS_API_KEY (or TRELLIS_ADMIN_KEY).
type client struct {
	url  string
	json bool
}

func (c *client) flags(cmd *cobra.Command) {
	def := os.Getenv("TRELLIS_URL")
	if def == "" {
		def = "http://127.0.0.1:8080"
	}
	cmd.PersistentFlags().StringVar(&c.url, "url", def, "the Trellis server (TRELLIS_URL); the key is read from TRELLIS_API_KEY or TRELLIS_ADMIN_KEY")
	cmd.PersistentFlags().BoolVar(&c.json, "json", false, "print the server's JSON answer")
}

// call sends body (nil: none) and decodes the answer into out; a problem
// document becomes the error.
func (c *client) call(cmd *cobra.Command, method, path string, body any, out any) ([]byte, error) {
	key := os.Getenv("TRELLIS_API_KEY")
	if key == "" {
		key = os.Getenv("TRELLIS_ADMIN_KEY")
	}
	if key == "" {
		return nil, fmt.Errorf("set TRELLIS_API_KEY (or TRELLIS_ADMIN_KEY) to a key of the server")
	}
	var r io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		r = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(cmd.Context(), method, strings.TrimRight(c.url, "/")+path, r)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		var p struct{ Title, Detail, Field string }
		_ = json.Unmarshal(raw, &p)
		if p.Field != "" {
			return nil, fmt.Errorf("%s %s: %d %s (%s): %s", method, path, resp.StatusCode, p.Title, p.Field, p.Detail)
		}
		return nil, fmt.Errorf("%s %s: %d %s: %s", method, path, resp.StatusCode, p.Title, p.Detail)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return nil, fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return raw, nil
}

// print writes the raw JSON with --json, else calls table.
func (c *client) print(cmd *cobra.Command, raw []byte, table func(w *tabwriter.Writer)) error {
	if c.json {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return err
		}
		enc := json.NewEncoder(cmd.OutOrStdout())
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 2, 2, ' ', 0)
	table(w)
	return w.Flush()
}

type accessPath struct {
	Kind        string   `json:"kind"`
	Outside     bool     `json:"outside"`
	Delegations []string `json:"delegations"`
	Steps       []struct {
		Resource, Relation, Subject string
	} `json:"steps"`
}

func (p accessPath) String() string {
	if p.Outside {
		return p.Kind + " (outside your organization)"
	}
	var steps []string
	for _, s := range p.Steps {
		steps = append(steps, s.Resource+"#"+s.Relation+"@"+s.Subject)
	}
	out := p.Kind + ": " + strings.Join(steps, " → ")
	if len(p.Delegations) > 0 {
		out += " [delegations " + strings.Join(p.Delegations, ", ") + "]"
	}
	return out
}

func accessCmd() *cobra.Command {
	c := &client{}
	ac := &cobra.Command{Use: "access", Short: "Access review against a running server (auditors)"}
	c.flags(ac)
	var pageSize int
	whoCan := &cobra.Command{
		Use: "who-can RESOURCE PERMISSION", Short: "Every user who holds PERMISSION on RESOURCE, and why", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var all []byte
			var rows [][2]string
			cursor := ""
			var totals map[string]any
			for {
				var page struct {
					Users []struct {
						User string       `json:"user"`
						Via  []accessPath `json:"via"`
					} `json:"users"`
					NextCursor string         `json:"nextCursor"`
					Totals     map[string]any `json:"totals"`
				}
				raw, err := c.call(cmd, "POST", "/v1/access/who-can", map[string]any{"resource": args[0], "permission": args[1], "pageSize": pageSize, "cursor": cursor}, &page)
				if err != nil {
					return err
				}
				if c.json {
					all = append(all, raw...)
				}
				for _, u := range page.Users {
					for i, p := range u.Via {
						name := u.User
						if i > 0 {
							name = ""
						}
						rows = append(rows, [2]string{name, p.String()})
					}
				}
				totals = page.Totals
				if cursor = page.NextCursor; cursor == "" {
					break
				}
			}
			if c.json {
				_, err := cmd.OutOrStdout().Write(all)
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 2, 2, ' ', 0)
			fmt.Fprintln(w, "USER\tVIA")
			for _, r := range rows {
				fmt.Fprintf(w, "%s\t%s\n", r[0], r[1])
			}
			fmt.Fprintf(w, "\ntotals: %v\n", totals)
			return w.Flush()
		},
	}
	whoCan.Flags().IntVar(&pageSize, "page-size", 100, "users per request")
	var org string
	user := &cobra.Command{
		Use: "user USER", Short: "A user's effective roles and permissions per organization, and where each comes from", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out struct {
				Organizations []struct {
					Organization string `json:"organization"`
					Roles        []struct {
						Role string       `json:"role"`
						Via  []accessPath `json:"via"`
					} `json:"roles"`
					Permissions []struct {
						Permission string       `json:"permission"`
						Via        []accessPath `json:"via"`
					} `json:"permissions"`
				} `json:"organizations"`
			}
			path := "/v1/access/users/" + url.PathEscape(args[0])
			if org != "" {
				path += "?organization=" + url.QueryEscape(org)
			}
			raw, err := c.call(cmd, "GET", path, nil, &out)
			if err != nil {
				return err
			}
			return c.print(cmd, raw, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "ORGANIZATION\tROLE/PERMISSION\tVIA")
				for _, o := range out.Organizations {
					for _, r := range o.Roles {
						for _, p := range r.Via {
							fmt.Fprintf(w, "%s\trole %s\t%s\n", o.Organization, r.Role, p.Kind)
						}
					}
					for _, pm := range o.Permissions {
						for _, p := range pm.Via {
							fmt.Fprintf(w, "%s\t%s\t%s\n", o.Organization, pm.Permission, p)
						}
					}
				}
			})
		},
	}
	user.Flags().StringVar(&org, "organization", "", "only this organization (id or slug)")
	var file string
	blast := &cobra.Command{
		Use: "blast-radius -f change.json", Short: "What a relationship or directory change would grant and revoke, computed and not applied", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			text, err := os.ReadFile(file)
			if err != nil {
				return err
			}
			var body any
			if err := json.Unmarshal(text, &body); err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			var out struct {
				Gained, Lost []struct{ Subject, Resource, Permission string }
				Totals       map[string]any
			}
			raw, err := c.call(cmd, "POST", "/v1/access/blast-radius", body, &out)
			if err != nil {
				return err
			}
			return c.print(cmd, raw, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "CHANGE\tSUBJECT\tPERMISSION\tRESOURCE")
				for _, t := range out.Gained {
					fmt.Fprintf(w, "gains\t%s\t%s\t%s\n", t.Subject, t.Permission, t.Resource)
				}
				for _, t := range out.Lost {
					fmt.Fprintf(w, "loses\t%s\t%s\t%s\n", t.Subject, t.Permission, t.Resource)
				}
				fmt.Fprintf(w, "\ntotals: %v\n", out.Totals)
			})
		},
	}
	blast.Flags().StringVarP(&file, "file", "f", "", "the change: {\"updates\": [...]} as POST /v1/relationships/write takes them, or one directory change such as {\"addGroupRole\": {\"organization\": ..., \"group\": ..., \"role\": ...}}")
	_ = blast.MarkFlagRequired("file")
	var subject string
	at := &cobra.Command{
		Use: "at RESOURCE PERMISSION TIME", Short: "The answer, and who could access, as of TIME (RFC 3339)", Args: cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]any{"resource": args[0], "permission": args[1], "at": args[2]}
			if subject != "" {
				body["subject"] = subject
			}
			var out struct {
				Allowed       *bool          `json:"allowed"`
				Users         []string       `json:"users"`
				Totals        map[string]any `json:"totals"`
				SchemaVersion string         `json:"schemaVersion"`
			}
			raw, err := c.call(cmd, "POST", "/v1/access/at", body, &out)
			if err != nil {
				return err
			}
			return c.print(cmd, raw, func(w *tabwriter.Writer) {
				if out.Allowed != nil {
					fmt.Fprintf(w, "%s may %s %s at %s:\t%v\n", subject, args[1], args[0], args[2], *out.Allowed)
				}
				fmt.Fprintf(w, "schema version:\t%s\n", out.SchemaVersion)
				fmt.Fprintf(w, "users then:\t%s\n", strings.Join(out.Users, ", "))
				fmt.Fprintf(w, "totals:\t%v\n", out.Totals)
			})
		},
	}
	at.Flags().StringVar(&subject, "subject", "", "also answer whether this subject held it")
	ac.AddCommand(whoCan, user, blast, at)
	return ac
}

// schemaDiffCmd is `trellis schema diff FILE` against a running server.
func schemaDiffCmd() *cobra.Command {
	c := &client{}
	cmd := &cobra.Command{
		Use: "diff FILE", Short: "Diff an app schema against a running server's, with its access impact", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			text, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			var out struct {
				Changes []struct{ Kind, Definition, Name string }
				Impact  struct {
					RelationshipsOrphaned, SubjectsGaining, SubjectsLosing int
					Samples                                                []string
				}
			}
			raw, err := c.call(cmd, "POST", "/v1/schema/diff", map[string]any{"text": string(text)}, &out)
			if err != nil {
				return err
			}
			return c.print(cmd, raw, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "CHANGE\tDEFINITION\tNAME")
				for _, ch := range out.Changes {
					fmt.Fprintf(w, "%s\t%s\t%s\n", ch.Kind, ch.Definition, ch.Name)
				}
				fmt.Fprintf(w, "\nrelationships orphaned:\t%d\nsubjects gaining:\t%d\nsubjects losing:\t%d\n", out.Impact.RelationshipsOrphaned, out.Impact.SubjectsGaining, out.Impact.SubjectsLosing)
				for _, s := range out.Impact.Samples {
					fmt.Fprintf(w, "  %s\n", s)
				}
			})
		},
	}
	c.flags(cmd)
	return cmd
}
