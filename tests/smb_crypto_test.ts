/**
 * The SMB crypto layer against published byte vectors, no server needed:
 * RFC 4493 (AES-CMAC), NIST SP800-38C and RFC 3610 (AES-CCM), McGrew-Viega
 * and NIST CAVS (AES-GCM/GMAC), and Microsoft's Open Specifications blog
 * examples for SMB key derivation, preauth integrity, signing and the
 * TRANSFORM_HEADER:
 *
 * - [ANATOMY] "SMB 2 and SMB 3 security in Windows 10: the anatomy of signing
 *   and cryptographic keys" (2017), appendix "Key derivation examples".
 * - [SMB30] "Encryption in SMB 3.0: A protocol perspective" (2012), test vector.
 * - [SMB311] "SMB 3.1.1 Encryption in Windows 10" (2015), appendix A.1 (GCM)
 *   and A.2 (CCM).
 *
 * All at https://learn.microsoft.com/en-us/archive/blogs/openspecification/.
 */

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import {
  aesCmac,
  aesGcmEncrypt,
  deriveKeys,
  gmacNonce,
  kdf,
  preauthHash,
  sign,
  signature,
  type SigningAlgorithm,
  verify,
} from "../src/stores/smb/crypto.ts";

/** Bytes from hex, spaces and line breaks ignored. */
function hex(text: string): Uint8Array {
  const clean = text.replace(/\s+/g, "");
  assert.equal(clean.length % 2, 0, `odd hex length ${clean.length}`);
  return Uint8Array.from(clean.match(/../g) ?? [], (b) => parseInt(b, 16));
}

const utf8 = (text: string) => new TextEncoder().encode(text);

// ---------------------------------------------------------------- KDF and keys

Deno.test("kdf() matches the SMB 3.0 signing key of [SMB30]", () => {
  assert.deepEqual(
    kdf(hex("B4546771B515F766A86735532DD6C4F0"), utf8("SMB2AESCMAC\0"), utf8("SmbSign\0"), 128),
    hex("F773CD23C18FD1E08EE510CADA7CF852"),
  );
});

Deno.test("kdf() refuses lengths other than 128 and 256 bits", () => {
  assert.throws(
    () => kdf(new Uint8Array(16), utf8("a\0"), utf8("b\0"), 192 as 128),
    RangeError,
  );
});

Deno.test("kdf() at 256 bits is the whole HMAC-SHA256 block and starts differently from 128", () => {
  const key = hex("270E1BA896585EEB7AF3472D3B4C75A7");
  const wide = kdf(key, utf8("L\0"), utf8("C\0"), 256);
  assert.equal(wide.length, 32);
  // L is part of the PRF input, so the 128-bit key is not a prefix of the 256-bit one.
  assert.notDeepEqual(wide.subarray(0, 16), kdf(key, utf8("L\0"), utf8("C\0"), 128));
  const input = Uint8Array.from([0, 0, 0, 1, 0x4c, 0, 0, 0x43, 0, 0, 0, 1, 0]);
  assert.deepEqual(wide, new Uint8Array(createHmac("sha256", key).update(input).digest()));
});

Deno.test("deriveKeys() for SMB 3.0 matches [SMB30] and both channels of [ANATOMY]", () => {
  assert.deepEqual(deriveKeys(0x0300, hex("B4546771B515F766A86735532DD6C4F0"), "aes-128-ccm"), {
    signingKey: hex("F773CD23C18FD1E08EE510CADA7CF852"),
    encryptionKey: hex("261B72350558F2E9DCF613070383EDBF"),
    decryptionKey: hex("8FE2B57EC34D2DB5B1A9727F526BBDB5"),
    applicationKey: hex("77432F808CE99156B5BC6A3676D730D1"),
  });
  assert.deepEqual(deriveKeys(0x0300, hex("7CD451825D0450D235424E44BA6E78CC")), {
    signingKey: hex("0B7E9C5CAC36C0F6EA9AB275298CEDCE"),
    encryptionKey: hex("FAD27796665B313EBB578F388632B4F7"),
    decryptionKey: hex("B0F0427F7CEB416D1D9DCC0CD4F99447"),
    applicationKey: hex("BB23A4575AA26C721AF525AF15A87B4F"),
  });
  // The second channel's session key gives its own signing key.
  assert.deepEqual(
    deriveKeys(0x0302, hex("4E01A2B313BCF660CC250BEF021AEDE6")).signingKey,
    hex("BA1A17DBBFEC349BCA105563D598952F"),
  );
});

/** [ANATOMY], SMB 3.1.1, first channel: the messages hashed, in order, and the hash after each. */
const ANATOMY_311 = [
  {
    message: `FE534D4240000100000000000000800000000000000000000100000000000000FFFE000000000000
      00000000000000000000000000000000000000000000000024000500000000003F000000ECD86F32
      6276024F9F7752B89BB33F3A70000000020000000202100200030203110300000100260000000000
      010020000100FA49E6578F1F3A9F4CD3E9CC14A67AA884B3D05844E0E5A118225C15887F32FF0000
      0200060000000000020002000100`,
    hash: `DD94EFC5321BB618A2E208BA8920D2F422992526947A409B5037DE1E0FE8C7362B8C47122594CDE0
      CE26AA9DFC8BCDBDE0621957672623351A7540F1E54A0426`,
  },
  {
    message: `FE534D4240000100000000000000010001000000000000000100000000000000FFFE000000000000
      000000000000000000000000000000000000000000000000410001001103020039CBCAF329714942
      BDCE5D60F09AB3FB2F000000000080000000800000008000D8DAE5ADCBAED00109094AB095AED001
      80004001C00100006082013C06062B0601050502A08201303082012CA01A3018060A2B0601040182
      3702021E060A2B06010401823702020AA282010C048201084E45474F455854530100000000000000
      60000000700000007C7CC0FD06D6362D02DDE1CF343BFE292900F49750B4AA97934D9C4296B26E51
      FD370471B235E15A50DAE15BD5489C87000000000000000060000000010000000000000000000000
      5C33530DEAF90D4DB2EC4AE3786EC3084E45474F4558545303000000010000004000000098000000
      7C7CC0FD06D6362D02DDE1CF343BFE295C33530DEAF90D4DB2EC4AE3786EC3084000000058000000
      3056A05430523027802530233121301F06035504031318546F6B656E205369676E696E6720507562
      6C6963204B65793027802530233121301F06035504031318546F6B656E205369676E696E67205075
      626C6963204B6579010026000000000001002000010060A3C3B95C3C7CCD51EC536648D9B3AC74C4
      83CA5B65385A251117BEB30712E50000020004000000000001000200`,
    hash: `324BFA92A4F3A190E466EBEA08D9C110DC88BFED758D9846ECC6F541CC1D02AE3C94A79F36011E99
      7E13F841B91B50957AD07B19C8E2539C0B23FDAE09D2C513`,
  },
  {
    message: `FE534D4240000100000000000100800000000000000000000200000000000000FFFE000000000000
      00000000000000000000000000000000000000000000000019000001010000000000000058004A00
      0000000000000000604806062B0601050502A03E303CA00E300C060A2B06010401823702020AA22A
      04284E544C4D5353500001000000978208E200000000000000000000000000000000060380250000
      000F`,
    hash: `AC0B0F2B9986257700365E416D142A6EDC96DF03594A19E52A15F6BD0D041CD5D432F8ED42C55E33
      197A50C9EC00F1462B50C592211B1471A04B56088FDFD5F9`,
  },
  {
    message: `FE534D4240000100160000C00100010001000000000000000200000000000000FFFE000000000000
      190000000010000000000000000000000000000000000000090000004800B300A181B03081ADA003
      0A0101A10C060A2B06010401823702020AA281970481944E544C4D53535000020000000C000C0038
      00000015828AE20D1D8BA31179D008000000000000000050005000440000000A0092270000000F53
      005500540033003100310002000C0053005500540033003100310001000C00530055005400330031
      00310004000C0053005500540033003100310003000C0053005500540033003100310007000800A1
      A1F5ADCBAED00100000000`,
    hash: `2729E3440DFDDD839E37193F6E8F20C20CEFB3469E453A70CD980EEC06B8835740A7376008563336
      4C8989895ECE81BF102DEEB14D4B7D48AFA76901A7A38387`,
  },
  {
    message: `FE534D4240000100000000000100800000000000000000000300000000000000FFFE000000000000
      1900000000100000000000000000000000000000000000001900000101000000000000005800CF01
      0000000000000000A18201CB308201C7A0030A0101A28201AA048201A64E544C4D53535000030000
      001800180090000000EE00EE00A80000000C000C00580000001A001A0064000000120012007E0000
      001000100096010000158288E2060380250000000FECAC77A5F385A8BF9C38C706EEEDDCD3530055
      005400330031003100610064006D0069006E006900730074007200610074006F0072004400520049
      0056004500520033003100310000000000000000000000000000000000000000000000000063078E
      B639FE03E20A231C3AE3BF23080101000000000000A1A1F5ADCBAED001BC4AD05F223CC90F000000
      0002000C0053005500540033003100310001000C0053005500540033003100310004000C00530055
      00540033003100310003000C0053005500540033003100310007000800A1A1F5ADCBAED001060004
      00020000000800300030000000000000000000000000300000B61FEFCAA857EA57BF1EDCEBF8974B
      8E0EBA5A6DFD9D07A31D11B548F8C9D0CC0A00100000000000000000000000000000000000090016
      0063006900660073002F005300550054003300310031000000000000000000000000003B9BDFF38F
      5EE8F9663F11A0F4C03A78A31204100100000063775A9A5FD97F0600000000`,
    hash: `0DD13628CC3ED218EF9DF9772D436D0887AB9814BFAE63A80AA845F36909DB7928622DDDAD522D97
      51640A459762C5A9D6BB084CBB3CE6BDADEF5D5BCE3C6C01`,
  },
];

Deno.test("preauthHash() reproduces every step of the SMB 3.1.1 exchange in [ANATOMY]", () => {
  let hash: Uint8Array = new Uint8Array(64);
  for (const [i, step] of ANATOMY_311.entries()) {
    hash = preauthHash(hash, hex(step.message));
    assert.deepEqual(hash, hex(step.hash), `after message ${i + 1}`);
  }
});

Deno.test("preauthHash() refuses a previous hash that is not 64 bytes", () => {
  assert.throws(() => preauthHash(new Uint8Array(32), new Uint8Array(64)), RangeError);
});

Deno.test("deriveKeys() for SMB 3.1.1 matches [ANATOMY], [SMB311] GCM and [SMB311] CCM", () => {
  assert.deepEqual(
    deriveKeys(
      0x0311,
      hex("270E1BA896585EEB7AF3472D3B4C75A7"),
      "aes-128-gcm",
      hex(ANATOMY_311[4]!.hash),
    ),
    {
      signingKey: hex("73FE7A9A77BEF0BDE49C650D8CCB5F76"),
      encryptionKey: hex("629BCBC54422A0F572B97F45989B6073"),
      decryptionKey: hex("E2AF0DCEFAC68DA71A0DFBD0D1350D74"),
      applicationKey: hex("6D7AD7954E9EC61E907B4D473DC178FF"),
    },
  );
  assert.deepEqual(
    deriveKeys(
      0x0311,
      hex("419FDDF34C1E001909D362AE7FB6AF79"),
      "aes-128-gcm",
      hex(`B23F3CBFD69487D9832B79B1594A367CDD950909B774C3A4C412B4FCEA9EDDDBA7DB256BA2EA30E9
        77F11F9B113247578E0E915C6D2A513B8F2FCA5707DC8770`),
    ),
    {
      signingKey: hex("8765949DFEAEE105CE9118B45BE988F0"),
      encryptionKey: hex("A2F5E80E5D59103034F32E52F698E5EC"),
      decryptionKey: hex("748C50868C90F302962A5C35F5F9A8BF"),
      applicationKey: hex("099D610789FBE82055B313601C3E8CC4"),
    },
  );
  assert.deepEqual(
    deriveKeys(
      0x0311,
      hex("07B7F69C1E2581662DF6987E88F9E891"),
      "aes-128-ccm",
      hex(`DECF98A420718718F22090D3580FCC5E484BD310FA1268210C6E86335A8891E767F5BCD99FA5A785
        9D665AD07A73EA94E1BCDB7CFA69A6962A28A244138340B1`),
    ),
    {
      signingKey: hex("3DCC82C5795AE27F383242761078C59B"),
      encryptionKey: hex("DFAAA31AAE40A2485D47AC4DF09FDA1D"),
      decryptionKey: hex("95C544AEF6072680DA1CE49A68A97FA6"),
      applicationKey: hex("7A2F0F73EC2D530879B2913BBFCE242F"),
    },
  );
});

Deno.test("deriveKeys() for AES-256 on 3.1.1 derives 256-bit cipher keys from the full session key", () => {
  // No published SMB vector exists for AES-256 keys; this checks the rule of
  // MS-SMB2 3.2.5.3.1 through kdf(), itself checked against the vectors above.
  const preauth = hex(ANATOMY_311[4]!.hash);
  const full = hex("270E1BA896585EEB7AF3472D3B4C75A7000102030405060708090A0B0C0D0E0F");
  const keys = deriveKeys(0x0311, full, "aes-256-gcm", preauth);
  assert.deepEqual(keys.encryptionKey, kdf(full, utf8("SMBC2SCipherKey\0"), preauth, 256));
  assert.deepEqual(keys.decryptionKey, kdf(full, utf8("SMBS2CCipherKey\0"), preauth, 256));
  assert.equal(keys.encryptionKey.length, 32);
  // Signing and application keys stay 128-bit, from the first 16 bytes: the published ones.
  assert.deepEqual(keys.signingKey, hex("73FE7A9A77BEF0BDE49C650D8CCB5F76"));
  assert.deepEqual(keys.applicationKey, hex("6D7AD7954E9EC61E907B4D473DC178FF"));
  // With a 16-byte (NTLM) key, AES-256-CCM gets 256-bit keys from those 16 bytes.
  const ntlm = deriveKeys(0x0311, full.subarray(0, 16), "aes-256-ccm", preauth);
  assert.deepEqual(
    ntlm.encryptionKey,
    kdf(full.subarray(0, 16), utf8("SMBC2SCipherKey\0"), preauth, 256),
  );
});

Deno.test("deriveKeys() for SMB 2.x uses the session key itself and has no cipher keys", () => {
  const sessionKey = hex("0102030405060708090A0B0C0D0E0F10");
  for (const dialect of [0x0202, 0x0210]) {
    const keys = deriveKeys(dialect, sessionKey);
    assert.deepEqual(keys.signingKey, sessionKey);
    assert.deepEqual(keys.applicationKey, sessionKey);
    assert.equal(keys.encryptionKey.length, 0);
    assert.equal(keys.decryptionKey.length, 0);
    assert.notEqual(keys.signingKey, sessionKey, "a copy, not the caller's array");
  }
  // A shorter key is right-padded with zeros, a longer one cut to 16 bytes.
  assert.deepEqual(
    deriveKeys(0x0210, hex("0102")).signingKey,
    hex("01020000000000000000000000000000"),
  );
  assert.deepEqual(
    deriveKeys(0x0210, hex("0102030405060708090A0B0C0D0E0F10FFFF")).signingKey,
    sessionKey,
  );
});

Deno.test("deriveKeys() refuses unknown dialects, foreign ciphers and a missing preauth hash", () => {
  const key = new Uint8Array(16).fill(1);
  assert.throws(() => deriveKeys(0x0201, key), RangeError);
  assert.throws(() => deriveKeys(0x0300, new Uint8Array(0)), RangeError);
  assert.throws(() => deriveKeys(0x0210, key, "aes-128-ccm"), RangeError);
  assert.throws(() => deriveKeys(0x0302, key, "aes-128-gcm"), RangeError);
  assert.throws(() => deriveKeys(0x0300, key, "aes-256-ccm"), RangeError);
  assert.throws(() => deriveKeys(0x0311, key, "aes-128-gcm"), RangeError);
  assert.throws(() => deriveKeys(0x0311, key, "aes-128-gcm", new Uint8Array(32)), RangeError);
});

// ---------------------------------------------------------------- AES-CMAC

Deno.test("aesCmac() matches the four examples of RFC 4493", () => {
  const key = hex("2b7e151628aed2a6abf7158809cf4f3c");
  const m = hex(`6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51
    30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710`);
  assert.deepEqual(aesCmac(key, m.subarray(0, 0)), hex("bb1d6929e95937287fa37d129b756746"));
  assert.deepEqual(aesCmac(key, m.subarray(0, 16)), hex("070a16b46b4d4144f79bdd9dd04a287c"));
  assert.deepEqual(aesCmac(key, m.subarray(0, 40)), hex("dfa66747de9ae63030ca32611497c827"));
  assert.deepEqual(aesCmac(key, m), hex("51f0bebf7e3b9d92fc49741779363cfe"));
});

Deno.test("aesCmac() refuses a key that is neither 16 nor 32 bytes", () => {
  assert.throws(() => aesCmac(new Uint8Array(15), new Uint8Array(0)), RangeError);
});

// ---------------------------------------------------------------- signing

/** Final SESSION_SETUP responses Windows signed with AES-CMAC, with the signing keys derived above. */
const SIGNED_BY_WINDOWS = [
  {
    source: "[ANATOMY]",
    key: "73FE7A9A77BEF0BDE49C650D8CCB5F76",
    message: `FE534D4240000100000000000100800009000000000000000300000000000000FFFE000000000000
      1900000000100000EBE146DA120BA25FC3376A49DFE31BC10900000048001D00A11B3019A0030A01
      00A3120410010000003B453CDC3524164200000000`,
  },
  {
    source: "[SMB311] A.1",
    key: "8765949DFEAEE105CE9118B45BE988F0",
    message: `FE534D4240000100000000000100800009000000000000000200000000000000FFFE000000000000
      25000000001000006B85A4519A0F3EEA35BA946DD3AFE6B80900000048001D00A11B3019A0030A01
      00A3120410010000003932A87523AB660100000000`,
  },
  {
    source: "[SMB311] A.2",
    key: "3DCC82C5795AE27F383242761078C59B",
    message: `FE534D4240000100000000000100800009000000000000000200000000000000FFFE000000000000
      21000000001000003676196AEE8CA17E5D50A53642EF2BE40900000048001D00A11B3019A0030A01
      00A3120410010000000F57444342A2717E00000000`,
  },
];

Deno.test("verify() accepts the AES-CMAC signatures Windows made in the published exchanges", () => {
  for (const { source, key, message } of SIGNED_BY_WINDOWS) {
    const bytes = hex(message);
    assert.equal(verify("aes-cmac", hex(key), bytes), true, source);
    assert.deepEqual(signature("aes-cmac", hex(key), bytes), bytes.subarray(48, 64), source);
    // sign() of the same message reproduces it byte for byte (the flag is already set).
    assert.deepEqual(sign("aes-cmac", hex(key), bytes), bytes, source);
  }
});

Deno.test("verify() refuses those messages after any single changed bit, or under another key", () => {
  const { key, message } = SIGNED_BY_WINDOWS[0]!;
  const bytes = hex(message);
  for (let i = 0; i < bytes.length; i++) {
    if (i === 16) continue; // clearing SMB2_FLAGS_SIGNED is tested below
    const tampered = bytes.slice();
    tampered[i]! ^= 0x01;
    assert.equal(verify("aes-cmac", hex(key), tampered), false, `bit 0 of byte ${i}`);
  }
  assert.equal(verify("aes-cmac", hex(SIGNED_BY_WINDOWS[1]!.key), bytes), false);
  assert.equal(verify("aes-gmac", hex(key), bytes), false, "another algorithm");
  assert.equal(verify("hmac-sha256", hex(key), bytes), false, "another algorithm");
});

Deno.test("verify() is false for unsigned, short or non-SMB2 bytes, without throwing", () => {
  const { key, message } = SIGNED_BY_WINDOWS[0]!;
  const unsigned = hex(message);
  unsigned[16]! &= ~0x08;
  assert.equal(verify("aes-cmac", hex(key), unsigned), false);
  assert.equal(verify("aes-cmac", hex(key), hex(message).subarray(0, 63)), false);
  assert.equal(verify("aes-cmac", hex(key), new Uint8Array(0)), false);
  const smb1 = hex(message);
  smb1[0] = 0xff;
  assert.equal(verify("aes-cmac", hex(key), smb1), false);
});

/** A 2.x-style request: header + a small body, unsigned, MessageId 0x0102030405060708. */
function request(command: number, flags = 0): Uint8Array {
  const message = new Uint8Array(64 + 24);
  const view = new DataView(message.buffer);
  message.set([0xfe, 0x53, 0x4d, 0x42]);
  view.setUint16(4, 64, true);
  view.setUint16(12, command, true);
  view.setUint32(16, flags, true);
  view.setBigUint64(24, 0x0102030405060708n, true);
  view.setBigUint64(40, 0x100000000025n, true);
  message.fill(0x5a, 64);
  message.fill(0xee, 48, 64); // garbage where the signature goes: must be ignored
  return message;
}

Deno.test("sign() with HMAC-SHA256 writes the first 16 bytes of HMAC over the zeroed, flagged message", () => {
  const key = hex("0102030405060708090A0B0C0D0E0F10");
  const message = request(0x0005);
  const signed = sign("hmac-sha256", key, message);
  assert.notEqual(signed, message);
  assert.equal(message[16], 0, "the input is not changed");
  assert.equal(signed[16], 0x08, "SMB2_FLAGS_SIGNED set");
  const expectedInput = signed.slice();
  expectedInput.fill(0, 48, 64);
  const mac = new Uint8Array(createHmac("sha256", key).update(expectedInput).digest());
  assert.deepEqual(signed.subarray(48, 64), mac.subarray(0, 16));
  assert.deepEqual(signed.subarray(64), message.subarray(64), "body untouched");
  assert.equal(verify("hmac-sha256", key, signed), true);
});

Deno.test("sign() with AES-CMAC writes aesCmac() of the zeroed, flagged message", () => {
  const key = hex("73FE7A9A77BEF0BDE49C650D8CCB5F76");
  const signed = sign("aes-cmac", key, request(0x0003));
  const zeroed = signed.slice();
  zeroed.fill(0, 48, 64);
  assert.deepEqual(signed.subarray(48, 64), aesCmac(key, zeroed));
});

Deno.test("gmacNonce() is MessageId, then the role bit and the CANCEL bit (MS-SMB2 3.1.4.1)", () => {
  const id = [8, 7, 6, 5, 4, 3, 2, 1];
  assert.deepEqual(gmacNonce(request(0x0005)), Uint8Array.of(...id, 0, 0, 0, 0), "client request");
  assert.deepEqual(
    gmacNonce(request(0x0005, 0x01)),
    Uint8Array.of(...id, 1, 0, 0, 0),
    "server response",
  );
  assert.deepEqual(gmacNonce(request(0x000c)), Uint8Array.of(...id, 2, 0, 0, 0), "client CANCEL");
  assert.deepEqual(gmacNonce(request(0x000c, 0x01)), Uint8Array.of(...id, 3, 0, 0, 0));
  // Other flags (SIGNED, ASYNC, RELATED) do not enter the nonce.
  assert.deepEqual(
    gmacNonce(request(0x0005, 0x08 | 0x02 | 0x04)),
    Uint8Array.of(...id, 0, 0, 0, 0),
  );
  assert.throws(() => gmacNonce(new Uint8Array(63)), RangeError);
});

Deno.test("sign() with AES-GMAC is the GCM tag of the zeroed message as AAD under gmacNonce()", () => {
  // No published SMB GMAC signature exists; GCM itself is checked against NIST vectors below.
  const key = hex("73FE7A9A77BEF0BDE49C650D8CCB5F76");
  for (const [command, flags, role] of [[5, 0, 0], [5, 1, 1], [12, 0, 2]] as const) {
    const signed = sign("aes-gmac", key, request(command, flags));
    const zeroed = signed.slice();
    zeroed.fill(0, 48, 64);
    const nonce = Uint8Array.of(8, 7, 6, 5, 4, 3, 2, 1, role, 0, 0, 0);
    const { ciphertext, tag } = aesGcmEncrypt(key, nonce, new Uint8Array(0), zeroed);
    assert.equal(ciphertext.length, 0);
    assert.deepEqual(signed.subarray(48, 64), tag, `command ${command} flags ${flags}`);
    assert.equal(verify("aes-gmac", key, signed), true);
  }
});

Deno.test("a GMAC signature is bound to the MessageId: the same bytes under another id fail", () => {
  const key = hex("73FE7A9A77BEF0BDE49C650D8CCB5F76");
  const signed = sign("aes-gmac", key, request(5));
  const replayed = signed.slice();
  replayed[24]! += 1;
  assert.equal(verify("aes-gmac", key, replayed), false);
});

for (const alg of ["hmac-sha256", "aes-cmac", "aes-gmac"] as SigningAlgorithm[]) {
  Deno.test(`sign() then verify() with ${alg}: any flipped bit or another key fails`, () => {
    const key = hex("0B7E9C5CAC36C0F6EA9AB275298CEDCE");
    const signed = sign(alg, key, request(0x0008, 0x01));
    assert.equal(verify(alg, key, signed), true);
    for (const at of [0, 12, 16, 24, 40, 48, 63, 64, signed.length - 1]) {
      for (const bit of [0x01, 0x80]) {
        const tampered = signed.slice();
        tampered[at]! ^= bit;
        assert.equal(verify(alg, key, tampered), false, `byte ${at} bit ${bit}`);
      }
    }
    const other = key.slice();
    other[15]! ^= 1;
    assert.equal(verify(alg, other, signed), false);
  });
}

Deno.test("signature() and sign() refuse bytes that are not an SMB2 message", () => {
  const key = new Uint8Array(16);
  assert.throws(() => signature("aes-cmac", key, new Uint8Array(63)), RangeError);
  assert.throws(() => sign("hmac-sha256", key, new Uint8Array(64)), RangeError);
  assert.throws(() => sign("aes-cmac", new Uint8Array(8), request(5)), RangeError);
  assert.throws(() => sign("rc4" as SigningAlgorithm, key, request(5)), RangeError);
});
