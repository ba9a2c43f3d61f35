package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	v1 "github.com/authzed/authzed-go/proto/authzed/api/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/trellis-iam/trellis"
)

// SpiceDB is the Engine over SpiceDB's v1 gRPC API. The same code serves the
// embedded server (an in-memory connection) and a remote cluster.
type SpiceDB struct {
	perms  v1.PermissionsServiceClient
	schema v1.SchemaServiceClient
	watch  v1.WatchServiceClient

	mu        sync.RWMutex
	lastWrite string // newest revision this node wrote or caught up to: reads are never older (read-your-writes)
	gen       uint64 // revisions recorded so far (see noteWrite)
	full      bool   // the newest revision is not known as one token: read at the head

	compiled compiledSchema // parsed stored schema, for Explain

	conn *grpc.ClientConn // when known: its state tells whether SpiceDB is reachable
}

var _ Engine = (*SpiceDB)(nil)

// NewSpiceDB wraps a connection to a SpiceDB v1 API. A new engine knows no
// revision yet, while the datastore may hold writes an earlier process made
// moments ago (a restart on PostgreSQL): whoever starts it calls CatchUp
// before serving (trellis serve does), so that minimizeLatency never picks a
// quantized revision older than those writes.
func NewSpiceDB(conn grpc.ClientConnInterface) *SpiceDB {
	s := &SpiceDB{perms: v1.NewPermissionsServiceClient(conn), schema: v1.NewSchemaServiceClient(conn), watch: v1.NewWatchServiceClient(conn)}
	s.conn, _ = conn.(*grpc.ClientConn)
	return s
}

// Reachable reports, without a call, whether the connection to SpiceDB is
// known to be usable: only while it is Ready. The check cache asks it before
// serving an answer, so checks fail closed when the engine is gone. A channel
// that lost its server cycles through TransientFailure, Idle and Connecting
// while it retries; none of them proves SpiceDB answers, so none serves a
// cached answer (an idle channel costs one miss, whose call reconnects it).
func (s *SpiceDB) Reachable() bool {
	if s.conn == nil {
		return true
	}
	return s.conn.GetState() == connectivity.Ready
}

// begin returns the generation to pass to noteWrite for an operation about to start.
func (s *SpiceDB) begin() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.gen
}

// noteWrite records the revision an operation started at generation since has
// committed (or read at the head). Revisions recorded before it started are not
// newer, so it becomes the floor of later reads. When another was recorded
// meanwhile, which of the two is newer is unknown (tokens are opaque): reads go
// to the head revision until an operation that overlapped no other settles it.
func (s *SpiceDB) noteWrite(token string, since uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen == since && token != "" {
		s.lastWrite, s.full = token, false
	} else {
		s.full = true
	}
	s.gen++
}

// mayHaveApplied reports whether a failed write may still have committed.
func mayHaveApplied(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.AlreadyExists, codes.NotFound,
		codes.OutOfRange, codes.PermissionDenied, codes.Unauthenticated, codes.ResourceExhausted, codes.Unimplemented:
		return false
	}
	return true
}

// noteUnknown records that something may have committed at a revision this
// node has no token for (a failed write, a change seen on the watch): reads go
// to the head revision until a later revision is recorded.
func (s *SpiceDB) noteUnknown() {
	s.mu.Lock()
	s.full = true
	s.gen++
	s.mu.Unlock()
}

// LastWrite is the revision token of this node's newest write ("" before any).
func (s *SpiceDB) LastWrite() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.lastWrite
}

func (s *SpiceDB) consistency(c Consistency) *v1.Consistency {
	s.mu.RLock()
	t, full := s.lastWrite, s.full
	s.mu.RUnlock()
	switch {
	case c.Mode == FullyConsistent || c.Mode == MinimizeLatency && full:
		return &v1.Consistency{Requirement: &v1.Consistency_FullyConsistent{FullyConsistent: true}}
	case c.Mode == AtLeastAsFresh:
		return &v1.Consistency{Requirement: &v1.Consistency_AtLeastAsFresh{AtLeastAsFresh: &v1.ZedToken{Token: c.Token}}}
	}
	if t != "" {
		return &v1.Consistency{Requirement: &v1.Consistency_AtLeastAsFresh{AtLeastAsFresh: &v1.ZedToken{Token: t}}}
	}
	return &v1.Consistency{Requirement: &v1.Consistency_MinimizeLatency{MinimizeLatency: true}}
}

// readConsistency is consistency(c) for a check, with settle to call with
// the revision its answer was computed at. A minimizeLatency read goes to the
// head revision while this node does not know its newest one (full: two
// writes overlapped, or one failed). A head read that began after everything
// recorded so far reflects all of it, so its revision settles that: later
// minimizeLatency reads are at least as fresh as it, and quantized again,
// instead of every read paying for the head (and missing SpiceDB's dispatch
// cache, which is keyed by revision) until the next write that overlaps none.
func (s *SpiceDB) readConsistency(c Consistency) (*v1.Consistency, func(token string)) {
	s.mu.RLock()
	full, since := s.full, s.gen
	s.mu.RUnlock()
	cons := s.consistency(c)
	if c.Mode != MinimizeLatency || !full {
		return cons, func(string) {}
	}
	return cons, func(token string) { s.settle(token, since) }
}

// settle records token, the head revision of a read that began at generation
// since, as the newest revision, unless something was recorded meanwhile.
func (s *SpiceDB) settle(token string, since uint64) {
	if token == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.full && s.gen == since {
		s.lastWrite, s.full = token, false
		s.gen++
	}
}

func objectRef(o ObjectRef) *v1.ObjectReference {
	return &v1.ObjectReference{ObjectType: o.Type, ObjectId: o.ID}
}

func subjectRef(s SubjectRef) *v1.SubjectReference {
	return &v1.SubjectReference{Object: objectRef(s.Object), OptionalRelation: s.Relation}
}

func contextStruct(field string, m map[string]any) (*structpb.Struct, error) {
	if len(m) == 0 {
		return nil, nil
	}
	st, err := structpb.NewStruct(m)
	if err != nil {
		return nil, trellis.Invalid(field, "cannot be used as caveat context: %v", err)
	}
	return st, nil
}

func permissionship(p v1.CheckPermissionResponse_Permissionship) Permissionship {
	switch p {
	case v1.CheckPermissionResponse_PERMISSIONSHIP_HAS_PERMISSION:
		return HasPermission
	case v1.CheckPermissionResponse_PERMISSIONSHIP_CONDITIONAL_PERMISSION:
		return Conditional
	}
	return NoPermission
}

func missing(info *v1.PartialCaveatInfo) []string {
	if info == nil {
		return nil
	}
	return info.MissingRequiredContext
}

// checkFields names, per request field, what SpiceDB may complain about.
func checkFields(r CheckRequest) []fieldHint {
	return []fieldHint{
		{"resource", r.Resource.Type, ""}, {"permission", r.Resource.Type, r.Permission},
		{"subject", r.Subject.Object.Type, r.Subject.Relation},
	}
}

// Check asks SpiceDB CheckPermission.
func (s *SpiceDB) Check(ctx context.Context, r CheckRequest) (CheckResult, error) {
	cs, err := contextStruct("context", r.Context)
	if err != nil {
		return CheckResult{}, err
	}
	cons, settle := s.readConsistency(r.Consistency)
	resp, err := s.perms.CheckPermission(ctx, &v1.CheckPermissionRequest{
		Consistency: cons,
		Resource:    objectRef(r.Resource),
		Permission:  r.Permission,
		Subject:     subjectRef(r.Subject),
		Context:     cs,
	})
	if err != nil {
		return CheckResult{}, translate(err, checkFields(r))
	}
	settle(resp.CheckedAt.GetToken())
	return CheckResult{
		Permissionship: permissionship(resp.Permissionship),
		MissingContext: missing(resp.PartialCaveatInfo),
		CheckedAt:      resp.CheckedAt.GetToken(),
	}, nil
}

// CheckBulk asks SpiceDB CheckBulkPermissions; results keep the request order.
// Every item shares the first item's consistency.
func (s *SpiceDB) CheckBulk(ctx context.Context, reqs []CheckRequest) ([]CheckResult, error) {
	if len(reqs) == 0 {
		return nil, nil
	}
	items := make([]*v1.CheckBulkPermissionsRequestItem, len(reqs))
	for i, r := range reqs {
		cs, err := contextStruct("context", r.Context)
		if err != nil {
			return nil, trellis.WithField(fmt.Sprintf("items[%d]", i), err)
		}
		items[i] = &v1.CheckBulkPermissionsRequestItem{
			Resource: objectRef(r.Resource), Permission: r.Permission, Subject: subjectRef(r.Subject), Context: cs,
		}
	}
	cons, settle := s.readConsistency(reqs[0].Consistency)
	resp, err := s.perms.CheckBulkPermissions(ctx, &v1.CheckBulkPermissionsRequest{
		Consistency: cons,
		Items:       items,
	})
	if err != nil {
		return nil, translate(err, nil)
	}
	settle(resp.CheckedAt.GetToken())
	out := make([]CheckResult, len(reqs))
	for i, pair := range resp.Pairs {
		if e := pair.GetError(); e != nil {
			return nil, trellis.WithField(fmt.Sprintf("items[%d]", i), translate(status.ErrorProto(e), checkFields(reqs[i])))
		}
		item := pair.GetItem()
		out[i] = CheckResult{
			Permissionship: permissionship(item.Permissionship),
			MissingContext: missing(item.PartialCaveatInfo),
			CheckedAt:      resp.CheckedAt.GetToken(),
		}
	}
	return out, nil
}

// LookupResources streams one page of resources the subject can reach.
func (s *SpiceDB) LookupResources(ctx context.Context, r LookupResourcesRequest) (LookupResourcesPage, error) {
	cs, err := contextStruct("context", r.Context)
	if err != nil {
		return LookupResourcesPage{}, err
	}
	req := &v1.LookupResourcesRequest{
		Consistency:        s.consistency(r.Consistency),
		ResourceObjectType: r.ResourceType,
		Permission:         r.Permission,
		Subject:            subjectRef(r.Subject),
		Context:            cs,
		OptionalLimit:      uint32(r.PageSize),
	}
	if r.Cursor != "" {
		req.OptionalCursor = &v1.Cursor{Token: r.Cursor}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := s.perms.LookupResources(ctx, req)
	hints := []fieldHint{{"resourceType", r.ResourceType, ""}, {"permission", r.ResourceType, r.Permission}, {"subject", r.Subject.Object.Type, r.Subject.Relation}}
	if err != nil {
		return LookupResourcesPage{}, translate(err, hints)
	}
	var page LookupResourcesPage
	// SpiceDB may find a resource by several paths and stream it once per
	// path: each resource is listed once (HAS_PERMISSION over CONDITIONAL);
	// the page still ends where SpiceDB's limit ended it
	at, received := map[string]int{}, 0
	for {
		res, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if status.Code(err) == codes.InvalidArgument && r.Cursor != "" {
				return LookupResourcesPage{}, trellis.Invalid("cursor", "is not valid for this request")
			}
			return LookupResourcesPage{}, translate(err, hints)
		}
		p := HasPermission
		if res.Permissionship == v1.LookupPermissionship_LOOKUP_PERMISSIONSHIP_CONDITIONAL_PERMISSION {
			p = Conditional
		}
		found := FoundObject{ID: res.ResourceObjectId, Permissionship: p, MissingContext: missing(res.PartialCaveatInfo)}
		if i, seen := at[found.ID]; !seen {
			at[found.ID] = len(page.Resources)
			page.Resources = append(page.Resources, found)
		} else if p == HasPermission {
			page.Resources[i] = found
		}
		page.LookedUpAt = res.LookedUpAt.GetToken()
		if received++; r.PageSize > 0 && received == r.PageSize {
			page.NextCursor = res.AfterResultCursor.GetToken()
		}
	}
	return page, nil
}

// LookupSubjects lists the subjects of a type that hold the permission.
func (s *SpiceDB) LookupSubjects(ctx context.Context, r LookupSubjectsRequest) ([]FoundObject, error) {
	cs, err := contextStruct("context", r.Context)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := s.perms.LookupSubjects(ctx, &v1.LookupSubjectsRequest{
		Consistency:             s.consistency(r.Consistency),
		Resource:                objectRef(r.Resource),
		Permission:              r.Permission,
		SubjectObjectType:       r.SubjectType,
		OptionalSubjectRelation: r.SubjectRelation,
		Context:                 cs,
	})
	hints := []fieldHint{{"resource", r.Resource.Type, ""}, {"permission", r.Resource.Type, r.Permission}, {"subjectType", r.SubjectType, r.SubjectRelation}}
	if err != nil {
		return nil, translate(err, hints)
	}
	var out []FoundObject
	for {
		res, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, translate(err, hints)
		}
		sub := res.Subject
		p := HasPermission
		if sub.Permissionship == v1.LookupPermissionship_LOOKUP_PERMISSIONSHIP_CONDITIONAL_PERMISSION {
			p = Conditional
		}
		out = append(out, FoundObject{ID: sub.SubjectObjectId, Permissionship: p, MissingContext: missing(sub.PartialCaveatInfo)})
	}
}

func toV1Relationship(field string, r Relationship) (*v1.Relationship, error) {
	rel := &v1.Relationship{Resource: objectRef(r.Resource), Relation: r.Relation, Subject: subjectRef(r.Subject)}
	if r.Caveat != nil {
		cs, err := contextStruct(field+".caveat.context", r.Caveat.Context)
		if err != nil {
			return nil, err
		}
		rel.OptionalCaveat = &v1.ContextualizedCaveat{CaveatName: r.Caveat.Name, Context: cs}
	}
	if r.ExpiresAt != nil {
		rel.OptionalExpiresAt = timestamppb.New(*r.ExpiresAt)
	}
	return rel, nil
}

func fromV1Relationship(r *v1.Relationship) Relationship {
	out := Relationship{
		Resource: ObjectRef{Type: r.Resource.ObjectType, ID: r.Resource.ObjectId},
		Relation: r.Relation,
		Subject: SubjectRef{
			Object:   ObjectRef{Type: r.Subject.Object.ObjectType, ID: r.Subject.Object.ObjectId},
			Relation: r.Subject.OptionalRelation,
		},
	}
	if c := r.OptionalCaveat; c != nil {
		out.Caveat = &Caveat{Name: c.CaveatName}
		if c.Context != nil && len(c.Context.Fields) > 0 {
			out.Caveat.Context = c.Context.AsMap()
		}
	}
	if r.OptionalExpiresAt != nil {
		t := r.OptionalExpiresAt.AsTime()
		out.ExpiresAt = &t
	}
	return out
}

var operations = map[Operation]v1.RelationshipUpdate_Operation{
	OpTouch: v1.RelationshipUpdate_OPERATION_TOUCH, OpCreate: v1.RelationshipUpdate_OPERATION_CREATE, OpDelete: v1.RelationshipUpdate_OPERATION_DELETE,
}

// WriteRelationships applies updates atomically and returns the written revision.
func (s *SpiceDB) WriteRelationships(ctx context.Context, updates []RelationshipUpdate) (string, error) {
	if len(updates) > MaxAtomicUpdates {
		return "", trellis.Invalid("updates", "at most %d updates per write", MaxAtomicUpdates)
	}
	req := &v1.WriteRelationshipsRequest{}
	for i, u := range updates {
		field := fmt.Sprintf("updates[%d]", i)
		op, ok := operations[u.Operation]
		if !ok {
			return "", trellis.Invalid(field+".operation", "must be touch, create or delete")
		}
		rel, err := toV1Relationship(field+".relationship", u.Relationship)
		if err != nil {
			return "", err
		}
		req.Updates = append(req.Updates, &v1.RelationshipUpdate{Operation: op, Relationship: rel})
	}
	since := s.begin()
	resp, err := s.perms.WriteRelationships(ctx, req)
	if err != nil {
		if mayHaveApplied(err) {
			s.noteUnknown()
		}
		return "", translateWrite(err, updates)
	}
	token := resp.WrittenAt.GetToken()
	s.noteWrite(token, since)
	return token, nil
}

// ReadRelationships returns one page of stored relationships matching the filter.
func (s *SpiceDB) ReadRelationships(ctx context.Context, r ReadRequest) (ReadPage, error) {
	f := &v1.RelationshipFilter{
		ResourceType:       r.Filter.ResourceType,
		OptionalResourceId: r.Filter.ResourceID,
		OptionalRelation:   r.Filter.Relation,
	}
	if sf := r.Filter.Subject; sf != nil {
		f.OptionalSubjectFilter = &v1.SubjectFilter{SubjectType: sf.Type, OptionalSubjectId: sf.ID}
		if sf.Relation != "" {
			f.OptionalSubjectFilter.OptionalRelation = &v1.SubjectFilter_RelationFilter{Relation: sf.Relation}
		}
	}
	req := &v1.ReadRelationshipsRequest{
		Consistency:        s.consistency(r.Consistency),
		RelationshipFilter: f,
		OptionalLimit:      uint32(r.PageSize),
	}
	if r.Cursor != "" {
		req.OptionalCursor = &v1.Cursor{Token: r.Cursor}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	hints := []fieldHint{{"filter.resourceType", r.Filter.ResourceType, ""}, {"filter.relation", r.Filter.ResourceType, r.Filter.Relation}}
	if sf := r.Filter.Subject; sf != nil {
		hints = append(hints, fieldHint{"filter.subject", sf.Type, sf.Relation})
	}
	stream, err := s.perms.ReadRelationships(ctx, req)
	if err != nil {
		return ReadPage{}, translate(err, hints)
	}
	var page ReadPage
	for {
		res, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return page, nil
		}
		if err != nil {
			if status.Code(err) == codes.InvalidArgument && r.Cursor != "" {
				return ReadPage{}, trellis.Invalid("cursor", "is not valid for this request")
			}
			return ReadPage{}, translate(err, hints)
		}
		page.Relationships = append(page.Relationships, fromV1Relationship(res.Relationship))
		page.ReadAt = res.ReadAt.GetToken()
		if r.PageSize > 0 && len(page.Relationships) == r.PageSize {
			page.NextCursor = res.AfterResultCursor.GetToken()
		}
	}
}

// ReadSchema returns the stored schema text ("" when none was written).
func (s *SpiceDB) ReadSchema(ctx context.Context) (string, error) {
	resp, err := s.schema.ReadSchema(ctx, &v1.ReadSchemaRequest{})
	if status.Code(err) == codes.NotFound {
		return "", nil
	}
	if err != nil {
		return "", translate(err, nil)
	}
	return resp.SchemaText, nil
}

// WriteSchema replaces the schema. SpiceDB refuses changes that would orphan
// stored relationships; that refusal is a *trellis.RuleError.
func (s *SpiceDB) WriteSchema(ctx context.Context, text string) (string, error) {
	since := s.begin()
	resp, err := s.schema.WriteSchema(ctx, &v1.WriteSchemaRequest{Schema: text})
	if err != nil {
		if mayHaveApplied(err) {
			s.noteUnknown()
		}
		if st, ok := status.FromError(err); ok && st.Code() == codes.FailedPrecondition {
			return "", &trellis.RuleError{Code: "schema_in_use", Message: st.Message()}
		}
		if st, ok := status.FromError(err); ok && st.Code() == codes.InvalidArgument {
			return "", trellis.Invalid("text", "%s", st.Message())
		}
		return "", translate(err, nil)
	}
	token := resp.WrittenAt.GetToken()
	s.noteWrite(token, since)
	return token, nil
}

// Ready reports whether SpiceDB answers.
func (s *SpiceDB) Ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := s.ReadSchema(ctx); err != nil {
		return fmt.Errorf("engine: not ready: %w: %v", trellis.ErrUnavailable, err)
	}
	return nil
}

// fieldHint maps a definition (and relation) SpiceDB may reject to the request field naming it.
type fieldHint struct {
	field, definition, relation string
}

// translate turns a gRPC error into a domain error, naming the request field
// when SpiceDB says which definition or relation it did not know.
func translate(err error, hints []fieldHint) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("engine: %w: %v", trellis.ErrUnavailable, err)
	}
	switch st.Code() {
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		field := ""
		for _, d := range st.Details() {
			info, ok := d.(*errdetails.ErrorInfo)
			if !ok {
				continue
			}
			def := info.Metadata["definition_name"]
			rel := info.Metadata["relation_or_permission_name"]
			for _, h := range hints {
				if h.definition == def && (rel == "" && h.relation == "" || rel != "" && h.relation == rel) {
					field = h.field
					break
				}
			}
		}
		return &trellis.ValidationError{Field: field, Message: st.Message()}
	case codes.NotFound:
		return fmt.Errorf("engine: %w: %s", trellis.ErrNotFound, st.Message())
	case codes.AlreadyExists, codes.Aborted:
		return fmt.Errorf("engine: %w: %s", trellis.ErrConflict, st.Message())
	case codes.ResourceExhausted:
		return fmt.Errorf("engine: %w: %s", trellis.ErrUnavailable, st.Message())
	}
	return fmt.Errorf("engine: %w: %s: %s", trellis.ErrUnavailable, st.Code(), st.Message())
}

func translateWrite(err error, updates []RelationshipUpdate) error {
	var hints []fieldHint
	for i, u := range updates {
		f := fmt.Sprintf("updates[%d].relationship", i)
		r := u.Relationship
		hints = append(hints,
			fieldHint{f + ".resource", r.Resource.Type, ""},
			fieldHint{f + ".relation", r.Resource.Type, r.Relation},
			fieldHint{f + ".subject", r.Subject.Object.Type, r.Subject.Relation},
		)
		if r.Caveat != nil {
			hints = append(hints, fieldHint{f + ".caveat.name", r.Caveat.Name, ""})
		}
	}
	if st, ok := status.FromError(err); ok && st.Code() == codes.AlreadyExists {
		return fmt.Errorf("engine: %w: %s", trellis.ErrConflict, st.Message())
	}
	out := translate(err, hints)
	var ve *trellis.ValidationError
	if errors.As(out, &ve) {
		ve.Field = subjectTypeField(ve, updates)
	}
	return out
}

// subjectTypeField names, for SpiceDB's "subjects of type `T` are not
// allowed on relation `def#rel`", the part of the update that makes T: its
// expiresAt ("user with expiration"), its caveat, or else its subject.
func subjectTypeField(ve *trellis.ValidationError, updates []RelationshipUpdate) string {
	_, after, ok := strings.Cut(ve.Message, "are not allowed on relation `")
	target, _, _ := strings.Cut(after, "`")
	def, rel, _ := strings.Cut(target, "#")
	if !ok {
		return ve.Field
	}
	for i, u := range updates {
		r := u.Relationship
		if r.Resource.Type != def || r.Relation != rel {
			continue
		}
		f := fmt.Sprintf("updates[%d].relationship", i)
		switch {
		case r.ExpiresAt != nil && strings.Contains(ve.Message, "with expiration"):
			return f + ".expiresAt"
		case r.Caveat != nil && strings.Contains(ve.Message, " with "+r.Caveat.Name):
			return f + ".caveat"
		}
		return f + ".subject"
	}
	return ve.Field
}
