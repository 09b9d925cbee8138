"""The declared parameters, by concern: `values` (the value types and their validators), `sections`
(the sections of params.yaml and of a preset, the attacks' included), `rules` (the cross-field rules)
and `explain` (validation with errors that name the key and the fix, and the listing of every key).
askknn.schema gathers their public names."""
