"""Sans-I/O protocol sessions (in the style of h11).

A session consumes envelopes and clock ticks and returns messages to send and
events; it never touches a socket, a clock or a disk by itself. The same
objects run in the deterministic simulator (`synod.sim`), in tests and in a node.
"""
