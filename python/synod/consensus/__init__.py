"""The replicated ledger: the custody state machine as a CometBFT ABCI application.

Above `synod.state` (it runs `Ledger.apply` block by block) and below `synod.runtime` (whose
write-backs it carries). `committee` says who may submit what, `signed` is the wire form of a
member-signed transaction, `app` the deterministic application, `abci` the socket server
CometBFT talks to, `client` the submitting side and `localnet` a loopback validator set.
"""
