"""Semantic cache: embed the last user turn, find cached neighbours in the same scope,
verify before serving. Heavy parts (numpy, embedders) load lazily."""
