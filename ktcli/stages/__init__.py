"""Stage sequencing: each stage's config and digest, the work dir's manifest, launching a
stage's training and following it, and reading the finished stages back."""
