package engine

import "context"

// RelationshipReader is the one engine method ReadAll needs.
type RelationshipReader interface {
	ReadRelationships(ctx context.Context, req ReadRequest) (ReadPage, error)
}

// ReadAll pages through every relationship f selects, fully consistent, and
// stops after limit relationships (limit <= 0: no limit).
func ReadAll(ctx context.Context, r RelationshipReader, f RelationshipFilter, limit int) ([]Relationship, error) {
	var out []Relationship
	cursor := ""
	for limit <= 0 || len(out) < limit {
		size := 1000
		if limit > 0 {
			size = min(size, limit-len(out))
		}
		page, err := r.ReadRelationships(ctx, ReadRequest{
			Filter: f, Consistency: Consistency{Mode: FullyConsistent}, PageSize: size, Cursor: cursor,
		})
		if err != nil {
			return out, err
		}
		out = append(out, page.Relationships...)
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	return out, nil
}
