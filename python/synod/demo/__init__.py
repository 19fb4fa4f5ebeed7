"""The demo: the whole custody pipeline on local chain engines (`pipeline`, `synod demo`), over a
solo-ordered or a replicated ledger (`ledgers`). It starts real member processes and real
engines, funds them and plays the users; it never imports the simulator, and nothing in
production imports it. (The power-transition demo, `synod demo --transition`, still signs with
the simulator's committee, so it stays in `synod.sim.transition_demo` until it runs on member
processes.)"""
