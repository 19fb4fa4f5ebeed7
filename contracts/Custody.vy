# pragma version ~=0.4.3
"""
@title Synod custody vault
@notice Holds native coin and ERC-20 tokens. Pays out only against a BIP340 Schnorr
        signature of the committee's FROST group key, so the threshold signature (not an
        EOA key) is what moves funds. The key rotates by a signature of the current key.

Signed messages (all fields are 32-byte ABI words, addresses left-padded with zeros):

    withdraw:   m = keccak256(WITHDRAW_TAG ‖ withdraw_id ‖ chain_id ‖ this ‖ asset ‖ to
                              ‖ amount ‖ fee_cap ‖ deadline ‖ epoch)
    update key: m = keccak256(UPDATE_TAG ‖ new_px ‖ chain_id ‖ this ‖ epoch + 1)

The 32-byte m is then signed with BIP340: the challenge is
e = SHA256(SHA256("BIP0340/challenge") ‖ SHA256("BIP0340/challenge") ‖ R.x ‖ P.x ‖ m) mod n.
"""

from ethereum.ercs import IERC20

# secp256k1: field prime p = 2²⁵⁶ − 2³² − 977 and group order n (in decimal: a 32-byte hex
# literal is a bytes32 in Vyper).
P: constant(uint256) = 115792089237316195423570985008687907853269984665640564039457584007908834671663
N: constant(uint256) = 115792089237316195423570985008687907852837564279074904382605163141518161494337
# p ≡ 3 (mod 4), so a square root of c is c^((p+1)/4) when one exists.
SQRT_EXP: constant(uint256) = (P + 1) // 4
# SHA256("BIP0340/challenge"), the BIP340 tag hash.
CHALLENGE_TAG: constant(bytes32) = 0x7BB52D7A9FEF58323EB1BF7A407DB382D2F3F2D81BB1224F49FE518F6D48D37C
WITHDRAW_TAG: constant(bytes32) = keccak256("synod.custody.withdraw.v1")
UPDATE_TAG: constant(bytes32) = keccak256("synod.custody.update-key.v1")
MODEXP: constant(address) = 0x0000000000000000000000000000000000000005
WORD: constant(uint256) = 32

event Deposit:
    sender: indexed(address)
    amount: uint256

event Withdrawn:
    withdraw_id: indexed(bytes32)
    asset: indexed(address)
    to: indexed(address)
    amount: uint256
    epoch: uint256

event PubkeyUpdated:
    old_px: uint256
    new_px: uint256
    epoch: indexed(uint256)

# x coordinate of the group key P; P is the lift of px with even y (BIP340 x-only key).
px: public(uint256)
# Bumped on every key rotation; signed into every message, so old signatures die with it.
epoch: public(uint256)
used: public(HashMap[bytes32, bool])


@deploy
def __init__(px: uint256):
    assert self._valid_key(px), "bad key"
    self.px = px


@payable
@external
def __default__():
    log Deposit(sender=msg.sender, amount=msg.value)


@external
@nonreentrant
def withdraw(
    withdraw_id: bytes32,
    asset: address,
    to: address,
    amount: uint256,
    fee_cap: uint256,
    deadline: uint256,
    sig_rx: uint256,
    sig_s: uint256,
):
    """
    @notice Pay `amount` of `asset` (empty(address) = native coin) to `to`, once per id.
    @param fee_cap Highest gas price (wei per gas) this payout may be mined at, so a relayer
           cannot spend more than the fee the ledger charged for it.
    """
    assert not self.used[withdraw_id], "withdraw id used"
    assert block.timestamp <= deadline, "expired"
    assert tx.gasprice <= fee_cap, "gas price above cap"
    m: bytes32 = keccak256(
        abi_encode(
            WITHDRAW_TAG,
            withdraw_id,
            chain.id,
            self,
            asset,
            to,
            amount,
            fee_cap,
            deadline,
            self.epoch,
        )
    )
    assert self._verify(self.px, m, sig_rx, sig_s), "bad signature"

    self.used[withdraw_id] = True  # effects before the external call
    if asset == empty(address):
        raw_call(to, b"", value=amount)  # forwards gas so contract wallets can receive
    else:
        # Tokens that return nothing count as success; a returned false reverts.
        assert extcall IERC20(asset).transfer(to, amount, default_return_value=True), "transfer"
    log Withdrawn(withdraw_id=withdraw_id, asset=asset, to=to, amount=amount, epoch=self.epoch)


@external
def updatePubkey(new_px: uint256, sig_rx: uint256, sig_s: uint256):
    """
    @notice Rotate to the next committee's key, authorised by the current key.
    """
    assert self._valid_key(new_px), "bad key"
    next_epoch: uint256 = self.epoch + 1
    m: bytes32 = keccak256(abi_encode(UPDATE_TAG, new_px, chain.id, self, next_epoch))
    assert self._verify(self.px, m, sig_rx, sig_s), "bad signature"
    log PubkeyUpdated(old_px=self.px, new_px=new_px, epoch=next_epoch)
    self.px = new_px
    self.epoch = next_epoch


@view
@external
def verify(px: uint256, m: bytes32, sig_rx: uint256, sig_s: uint256) -> bool:
    """
    @notice The BIP340 verifier on its own, for off-chain checks and tests.
    """
    return self._verify(px, m, sig_rx, sig_s)


@view
@internal
def _verify(px: uint256, m: bytes32, rx: uint256, s: uint256) -> bool:
    # BIP340: valid iff R := s·G − e·P is not infinity, has even y and R.x == rx.
    if rx >= P or s >= N:
        return False
    e: uint256 = convert(
        sha256(concat(CHALLENGE_TAG, CHALLENGE_TAG, convert(rx, bytes32), convert(px, bytes32), m)),
        uint256,
    ) % N

    # ecrecover(h, v, r, t) returns the address of Q = r⁻¹·(t·K − h·G), where K is the point
    # with x = r and y parity v − 27. With K = P (r = px, v = 27 since P.y is even),
    # h = −s·px and t = −e·px (mod n):
    #     Q = px⁻¹·(−e·px·P + s·px·G) = s·G − e·P.
    # It returns empty(address) when t = 0 or Q is infinity.
    h: uint256 = (N - uint256_mulmod(s, px, N)) % N
    t: uint256 = (N - uint256_mulmod(e, px, N)) % N
    q: address = ecrecover(convert(h, bytes32), 27, px, t)
    if q == empty(address):
        return False

    # Lift R.x to the point with even y and compare it with Q by address (the low 160 bits
    # of keccak256(x ‖ y)): passing with Q ≠ R takes a 160-bit keccak second preimage.
    ok: bool = False
    ry: uint256 = 0
    ok, ry = self._lift_x(rx)
    if not ok:
        return False
    r_addr: address = convert(
        convert(keccak256(concat(convert(rx, bytes32), convert(ry, bytes32))), uint256)
        & convert(max_value(uint160), uint256),
        address,
    )
    return q == r_addr


@view
@internal
def _lift_x(x: uint256) -> (bool, uint256):
    # y² = x³ + 7 (mod p); y = c^((p+1)/4) via the modexp precompile, then checked.
    c: uint256 = uint256_addmod(uint256_mulmod(uint256_mulmod(x, x, P), x, P), 7, P)
    # modexp input: len(base) ‖ len(exp) ‖ len(mod) ‖ base ‖ exp ‖ mod, all 32-byte words.
    out: Bytes[32] = raw_call(
        MODEXP, abi_encode(WORD, WORD, WORD, c, SQRT_EXP, P), max_outsize=32, is_static_call=True
    )
    y: uint256 = extract32(out, 0, output_type=uint256)
    if uint256_mulmod(y, y, P) != c:
        return False, 0  # x is not on the curve
    if y % 2 == 1:
        y = P - y
    return True, y


@view
@internal
def _valid_key(px: uint256) -> bool:
    # 0 < px < n so ecrecover takes it as r; (px < n also implies px < p.)
    if px == 0 or px >= N:
        return False
    ok: bool = False
    y: uint256 = 0
    ok, y = self._lift_x(px)
    return ok
