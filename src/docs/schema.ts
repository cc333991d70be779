// The version every flt document carries in its `schema` field (root.ts, facts.ts, audit.ts).
// A reader that meets a newer schema knows the document was written by a newer flt.

export const DOC_SCHEMA = 1;
