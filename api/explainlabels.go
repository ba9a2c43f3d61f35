package api

import (
	"context"

	"github.com/trellis-iam/trellis/engine"
)

// explainStepJSON is one relationship of an explain path with what a person
// reads: the directory's names for its resource and subject (an
// organization's name and slug, a user's email, a group's, role's or service
// account's name) and the step as a sentence.
type explainStepJSON struct {
	relationshipJSON
	ResourceLabel string `json:"resourceLabel,omitempty"`
	SubjectLabel  string `json:"subjectLabel,omitempty"`
	Label         string `json:"label"`
}

func (s *Server) explainPaths(ctx context.Context, paths [][]engine.Relationship) ([][]explainStepJSON, error) {
	labels := map[engine.ObjectRef]string{}
	if s.dir != nil {
		var objs []engine.ObjectRef
		for _, p := range paths {
			for _, r := range p {
				objs = append(objs, r.Resource, r.Subject.Object)
			}
		}
		var err error
		if labels, err = s.dir.Labels(ctx, objs); err != nil {
			return nil, err
		}
	}
	out := make([][]explainStepJSON, len(paths))
	for i, p := range paths {
		out[i] = make([]explainStepJSON, len(p))
		for j, r := range p {
			st := explainStepJSON{relationshipJSON: toRelationshipJSON(r),
				ResourceLabel: labels[r.Resource], SubjectLabel: labels[r.Subject.Object]}
			res, sub := st.Resource, st.Subject
			if st.ResourceLabel != "" {
				res = r.Resource.Type + " " + st.ResourceLabel
			}
			if st.SubjectLabel != "" {
				sub = r.Subject.Object.Type + " " + st.SubjectLabel
				if r.Subject.Relation != "" {
					sub += " #" + r.Subject.Relation
				}
			}
			st.Label = res + " has " + r.Relation + " " + sub
			out[i][j] = st
		}
	}
	return out, nil
}
