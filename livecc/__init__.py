"""Front ends without Qt, above the engine: `livecc.cli` (the `livecc` command). They may import
`engine` and `tts`; the engine imports none of them."""
