"""Poetry plugin: poetic forms with constrained decoding and validators, and typeset layouts."""
