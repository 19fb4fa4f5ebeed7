"""The demos: the whole custody pipeline on local chain engines (`pipeline`, `synod demo`),
over a solo-ordered or a replicated ledger (`ledgers`), and a power transition (`transition`,
`synod demo --transition`). They start real member processes and real engines, fund them and
play the users; nothing in production imports them."""
