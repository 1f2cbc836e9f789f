package bookings

import "google.golang.org/protobuf/types/known/structpb"

// Helpers for the JSON-like documents (google.protobuf.Struct) that the MongoDB and
// Elasticsearch operations carry. Field names are the SQL column names, so the read model has
// the same shape in every target. Struct numbers are doubles: exact for integers below 2^53.

type fields = map[string]*structpb.Value

func document(f fields) *structpb.Struct { return &structpb.Struct{Fields: f} }

func object(f fields) *structpb.Value { return structpb.NewStructValue(document(f)) }

func str(s string) *structpb.Value { return structpb.NewStringValue(s) }

func num(i int64) *structpb.Value { return structpb.NewNumberValue(float64(i)) }
