/*
 * scram.c - SCRAM-SHA-256 message building, parsing and key arithmetic.
 *
 * Every key operation is an OpenSSL call (RFC 5802 section 3):
 *   SaltedPassword  = PBKDF2-HMAC-SHA-256(password, salt, i)
 *   ClientKey       = HMAC(SaltedPassword, "Client Key")
 *   StoredKey       = SHA-256(ClientKey)
 *   ServerKey       = HMAC(SaltedPassword, "Server Key")
 *   AuthMessage     = client-first-bare "," server-first "," final-no-proof
 *   ClientSignature = HMAC(StoredKey, AuthMessage)
 *   ClientProof     = ClientKey XOR ClientSignature
 *   ServerSignature = HMAC(ServerKey, AuthMessage)
 * The server recovers ClientKey = ClientProof XOR ClientSignature and
 * compares SHA-256(ClientKey) with StoredKey in constant time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "scram.h"

/* base64("n,,"): the gs2 header of a client without channel binding. */
#define GS2_HEADER "n,,"
#define GS2_B64 "biws"

static const char b64_alpha[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int
fy_b64_encode(char *out, size_t outsz, const uint8_t *in, size_t len)
{
	size_t need = 4 * ((len + 2) / 3) + 1;

	if (outsz < need || len > 0x3fffffff)
		return -1;
	return EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

int
fy_b64_decode(uint8_t *out, size_t max, const char *in, size_t len)
{
	uint8_t tmp[3 * (FY_SCRAM_MSG_MAX / 4)];
	size_t i, pad = 0;
	int n;

	/* EVP_DecodeBlock forgives whitespace and counts padding as zero
	 * bytes; a verifier or a proof must be exactly one spelling, so the
	 * text is checked here first. */
	if (len == 0 || len % 4 != 0 || len > FY_SCRAM_MSG_MAX)
		return -1;
	for (i = 0; i < len; i++) {
		if (in[i] == '=' && i >= len - 2) {
			pad++;
			continue;
		}
		if (pad || in[i] == '\0' || strchr(b64_alpha, in[i]) == NULL)
			return -1;
	}
	n = EVP_DecodeBlock(tmp, (const unsigned char *)in, (int)len);
	if (n < 0 || (size_t)n < pad || (size_t)n - pad > max)
		return -1;
	n -= (int)pad;
	memcpy(out, tmp, (size_t)n);
	OPENSSL_cleanse(tmp, sizeof(tmp));
	return n;
}

int
fy_scram_user_valid(const char *name, size_t len)
{
	size_t i;
	char ch;

	if (name == NULL || len == 0 || len > FY_SCRAM_USER_MAX)
		return 0;
	for (i = 0; i < len; i++) {
		ch = name[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		    (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
		    ch == '-' || ch == '@'))
			return 0;
	}
	return 1;
}

/* RFC 5802 "printable": %x21-2B / %x2D-7E, i.e. no ',' and no space. */
static int
nonce_valid(const char *p, size_t len)
{
	size_t i;

	if (len == 0 || len > 2 * FY_SCRAM_NONCE_MAX)
		return 0;
	for (i = 0; i < len; i++)
		if (p[i] < 0x21 || p[i] > 0x7e || p[i] == ',')
			return 0;
	return 1;
}

int
fy_scram_nonce(char *buf, size_t len)
{
	uint8_t raw[FY_SCRAM_NONCE_MAX];
	char enc[4 * (FY_SCRAM_NONCE_MAX / 3 + 1) + 1];

	if (len == 0 || len > FY_SCRAM_NONCE_MAX)
		return FY_EPROTO;
	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return FY_ENOMEM;
	/* 64 random bytes give 88 base64 characters; len of them carry
	 * 6 bits each, 384 bits at most, more than the RFC needs. */
	fy_b64_encode(enc, sizeof(enc), raw, sizeof(raw));
	memcpy(buf, enc, len);
	buf[len] = '\0';
	return FY_OK;
}

static int
hmac(const uint8_t *key, size_t klen, const void *data, size_t len,
    uint8_t out[FY_SCRAM_KEY_LEN])
{
	unsigned int olen = 0;

	if (HMAC(EVP_sha256(), key, (int)klen, data, len, out, &olen) ==
	    NULL || olen != FY_SCRAM_KEY_LEN)
		return FY_ENOMEM;
	return FY_OK;
}

/* ClientKey and ServerKey from the salted password. */
static int
derive(const char *pw, size_t pw_len, const uint8_t *salt, size_t salt_len,
    uint32_t iter, uint8_t ckey[FY_SCRAM_KEY_LEN],
    uint8_t skey[FY_SCRAM_KEY_LEN])
{
	uint8_t salted[FY_SCRAM_KEY_LEN];
	int r = FY_ENOMEM;

	if (PKCS5_PBKDF2_HMAC(pw, (int)pw_len, salt, (int)salt_len,
	    (int)iter, EVP_sha256(), sizeof(salted), salted) != 1)
		goto out;
	if (hmac(salted, sizeof(salted), "Client Key", 10, ckey) ||
	    hmac(salted, sizeof(salted), "Server Key", 10, skey))
		goto out;
	r = FY_OK;
out:
	OPENSSL_cleanse(salted, sizeof(salted));
	return r;
}

int
fy_scram_verifier_make(struct fy_scram_verifier *v, const char *pw,
    size_t pw_len, const uint8_t *salt, size_t salt_len, uint32_t iter)
{
	uint8_t ckey[FY_SCRAM_KEY_LEN];
	int r;

	if (salt_len == 0 || salt_len > FY_SCRAM_SALT_MAX || iter == 0 ||
	    iter > FY_SCRAM_ITER_MAX || pw_len > 0x7fffffff)
		return FY_EPROTO;
	memset(v, 0, sizeof(*v));
	memcpy(v->salt, salt, salt_len);
	v->salt_len = (uint32_t)salt_len;
	v->iter = iter;
	r = derive(pw, pw_len, salt, salt_len, iter, ckey, v->server_key);
	if (r == FY_OK && SHA256(ckey, sizeof(ckey), v->stored_key) == NULL)
		r = FY_ENOMEM;
	OPENSSL_cleanse(ckey, sizeof(ckey));
	return r;
}

int
fy_scram_verifier_fake(struct fy_scram_verifier *v, const char *user,
    const uint8_t *secret, size_t secret_len, uint32_t iter)
{
	uint8_t mac[FY_SCRAM_KEY_LEN];

	memset(v, 0, sizeof(*v));
	if (hmac(secret, secret_len, user, strlen(user), mac))
		return FY_ENOMEM;
	/* 16 bytes, the length ferry's own verifiers use, so the
	 * challenge of an unknown user looks like any other. */
	memcpy(v->salt, mac, 16);
	v->salt_len = 16;
	v->iter = iter;
	if (RAND_bytes(v->stored_key, sizeof(v->stored_key)) != 1 ||
	    RAND_bytes(v->server_key, sizeof(v->server_key)) != 1)
		return FY_ENOMEM;
	return FY_OK;
}

/* Append s[0..len) to a NUL-terminated buffer of size sz. */
static int
cat(char *buf, size_t sz, const char *s, size_t len)
{
	size_t have = strlen(buf);

	if (have + len + 1 > sz)
		return FY_EPROTO;
	memcpy(buf + have, s, len);
	buf[have + len] = '\0';
	return FY_OK;
}

/* Signature HMAC(key, AuthMessage) into out. */
static int
sign(const uint8_t key[FY_SCRAM_KEY_LEN], const char *auth,
    uint8_t out[FY_SCRAM_KEY_LEN])
{
	return hmac(key, FY_SCRAM_KEY_LEN, auth, strlen(auth), out);
}

/* ------------------------------------------------------------------ */
/* Client */

int
fy_scram_client_first(struct fy_scram_client *c, const char *user,
    const char *cnonce, char *out)
{
	size_t ulen = strlen(user), nlen = strlen(cnonce);

	memset(c, 0, sizeof(*c));
	c->state = FY_SCRAM_FAILED;
	if (!fy_scram_user_valid(user, ulen) || nlen > FY_SCRAM_NONCE_MAX ||
	    !nonce_valid(cnonce, nlen))
		return FY_EPROTO;
	snprintf(c->bare, sizeof(c->bare), "n=%s,r=%s", user, cnonce);
	memcpy(c->nonce, cnonce, nlen + 1);
	snprintf(out, FY_SCRAM_MSG_MAX, GS2_HEADER "%s", c->bare);
	c->state = FY_SCRAM_SENT_FIRST;
	return FY_OK;
}

/* The value of attribute a at *p ("a=value,"), up to the next ',' or the
 * end; moves *p past the ','.  0 if p does not start with "a=". */
static int
attr(const char **p, const char *end, char a, const char **val,
    size_t *vlen)
{
	const char *s = *p, *comma;

	if (end - s < 2 || s[0] != a || s[1] != '=')
		return 0;
	s += 2;
	comma = memchr(s, ',', (size_t)(end - s));
	*val = s;
	*vlen = (size_t)((comma ? comma : end) - s);
	*p = comma ? comma + 1 : end;
	return 1;
}

int
fy_scram_client_final(struct fy_scram_client *c, const char *pw,
    size_t pw_len, const char *sfirst, size_t len, char *out)
{
	const char *p = sfirst, *end = sfirst + len, *nonce, *salt, *it;
	size_t nlen, slen, ilen, mine = strlen(c->nonce);
	uint8_t saltb[FY_SCRAM_SALT_MAX], ckey[FY_SCRAM_KEY_LEN],
	    stored[FY_SCRAM_KEY_LEN], sig[FY_SCRAM_KEY_LEN];
	char ibuf[16], proof[64], *e;
	unsigned long iter;
	int n, r = FY_EPROTO, i;

	if (c->state != FY_SCRAM_SENT_FIRST)
		goto fail;
	c->state = FY_SCRAM_FAILED;
	if (len >= FY_SCRAM_MSG_MAX || memchr(sfirst, '\0', len) != NULL)
		goto fail;
	if (!attr(&p, end, 'r', &nonce, &nlen) ||
	    !attr(&p, end, 's', &salt, &slen) ||
	    !attr(&p, end, 'i', &it, &ilen) || p != end)
		goto fail;
	/* The server's part must extend ours, or someone replays an old
	 * challenge or mixes two sessions. */
	if (nlen <= mine || memcmp(nonce, c->nonce, mine) != 0 ||
	    !nonce_valid(nonce, nlen))
		goto fail;
	if (ilen == 0 || ilen >= sizeof(ibuf) || it[0] < '1' || it[0] > '9')
		goto fail;
	memcpy(ibuf, it, ilen);
	ibuf[ilen] = '\0';
	iter = strtoul(ibuf, &e, 10);
	if (*e != '\0' || iter < FY_SCRAM_ITER_MIN ||
	    iter > FY_SCRAM_ITER_MAX)
		goto fail;
	n = fy_b64_decode(saltb, sizeof(saltb), salt, slen);
	if (n <= 0)
		goto fail;
	memcpy(c->nonce, nonce, nlen);
	c->nonce[nlen] = '\0';

	r = derive(pw, pw_len, saltb, (size_t)n, (uint32_t)iter, ckey,
	    c->server_key);
	if (r)
		goto fail;
	r = FY_ENOMEM;
	if (SHA256(ckey, sizeof(ckey), stored) == NULL)
		goto fail;
	snprintf(out, FY_SCRAM_MSG_MAX, "c=" GS2_B64 ",r=%s", c->nonce);
	c->auth[0] = '\0';
	if (cat(c->auth, sizeof(c->auth), c->bare, strlen(c->bare)) ||
	    cat(c->auth, sizeof(c->auth), ",", 1) ||
	    cat(c->auth, sizeof(c->auth), sfirst, len) ||
	    cat(c->auth, sizeof(c->auth), ",", 1) ||
	    cat(c->auth, sizeof(c->auth), out, strlen(out)))
		goto fail;
	if (sign(stored, c->auth, sig))
		goto fail;
	for (i = 0; i < FY_SCRAM_KEY_LEN; i++)
		ckey[i] ^= sig[i];
	fy_b64_encode(proof, sizeof(proof), ckey, sizeof(ckey));
	r = FY_EPROTO;
	if (cat(out, FY_SCRAM_MSG_MAX, ",p=", 3) ||
	    cat(out, FY_SCRAM_MSG_MAX, proof, strlen(proof)))
		goto fail;
	c->state = FY_SCRAM_SENT_FINAL;
	r = FY_OK;
fail:
	OPENSSL_cleanse(ckey, sizeof(ckey));
	OPENSSL_cleanse(stored, sizeof(stored));
	if (r)
		fy_scram_client_clear(c);
	return r;
}

int
fy_scram_client_verify(struct fy_scram_client *c, const char *sfinal,
    size_t len)
{
	const char *p = sfinal, *end = sfinal + len, *v;
	uint8_t want[FY_SCRAM_KEY_LEN], got[FY_SCRAM_KEY_LEN];
	size_t vlen;
	int r = FY_EPROTO;

	if (c->state != FY_SCRAM_SENT_FINAL)
		goto out;
	if (!attr(&p, end, 'v', &v, &vlen) || p != end ||
	    fy_b64_decode(got, sizeof(got), v, vlen) != FY_SCRAM_KEY_LEN)
		goto out;
	r = FY_ENOMEM;
	if (sign(c->server_key, c->auth, want))
		goto out;
	r = CRYPTO_memcmp(want, got, sizeof(want)) == 0 ? FY_OK : FY_EAUTH;
out:
	fy_scram_client_clear(c);
	c->state = r == FY_OK ? FY_SCRAM_DONE : FY_SCRAM_FAILED;
	return r;
}

void
fy_scram_client_clear(struct fy_scram_client *c)
{
	OPENSSL_cleanse(c->server_key, sizeof(c->server_key));
	c->state = FY_SCRAM_FAILED;
}

/* ------------------------------------------------------------------ */
/* Server */

int
fy_scram_server_first(struct fy_scram_server *s, const char *cfirst,
    size_t len)
{
	const char *p, *end = cfirst + len, *user, *nonce;
	size_t ulen, nlen;

	memset(s, 0, sizeof(*s));
	s->state = FY_SCRAM_FAILED;
	if (len >= FY_SCRAM_MSG_MAX || memchr(cfirst, '\0', len) != NULL)
		return FY_EPROTO;
	/* Only "n,,": no channel binding, no authzid. */
	if (len < 3 || memcmp(cfirst, GS2_HEADER, 3) != 0)
		return FY_EPROTO;
	p = cfirst + 3;
	if (!attr(&p, end, 'n', &user, &ulen) ||
	    !attr(&p, end, 'r', &nonce, &nlen))
		return FY_EPROTO;
	/* Extensions after the nonce are allowed by the RFC and ignored;
	 * they stay in the bare message, hence in the AuthMessage. */
	if (!fy_scram_user_valid(user, ulen) || nlen > FY_SCRAM_NONCE_MAX ||
	    !nonce_valid(nonce, nlen))
		return FY_EPROTO;
	memcpy(s->user, user, ulen);
	s->user[ulen] = '\0';
	memcpy(s->nonce, nonce, nlen);
	s->nonce[nlen] = '\0';
	memcpy(s->auth, cfirst + 3, len - 3);
	s->auth[len - 3] = '\0';
	s->state = FY_SCRAM_GOT_FIRST;
	return FY_OK;
}

int
fy_scram_server_challenge(struct fy_scram_server *s,
    const struct fy_scram_verifier *v, const char *snonce, char *out)
{
	char salt[4 * (FY_SCRAM_SALT_MAX / 3 + 1) + 1];
	size_t nlen = strlen(snonce), mine = strlen(s->nonce);

	if (s->state != FY_SCRAM_GOT_FIRST || v->salt_len == 0 ||
	    v->salt_len > FY_SCRAM_SALT_MAX || nlen > FY_SCRAM_NONCE_MAX ||
	    !nonce_valid(snonce, nlen)) {
		fy_scram_server_clear(s);
		return FY_EPROTO;
	}
	s->v = *v;
	memcpy(s->nonce + mine, snonce, nlen + 1);
	fy_b64_encode(salt, sizeof(salt), v->salt, v->salt_len);
	snprintf(out, FY_SCRAM_MSG_MAX, "r=%s,s=%s,i=%u", s->nonce, salt,
	    v->iter);
	if (cat(s->auth, sizeof(s->auth), ",", 1) ||
	    cat(s->auth, sizeof(s->auth), out, strlen(out))) {
		fy_scram_server_clear(s);
		return FY_EPROTO;
	}
	s->state = FY_SCRAM_SENT_CHALLENGE;
	return FY_OK;
}

int
fy_scram_server_final(struct fy_scram_server *s, const char *cfinal,
    size_t len, char *out)
{
	const char *p = cfinal, *end = cfinal + len, *cb, *nonce, *pr;
	size_t cblen, nlen, prlen, noproof;
	uint8_t proof[FY_SCRAM_KEY_LEN], sig[FY_SCRAM_KEY_LEN],
	    stored[FY_SCRAM_KEY_LEN];
	char enc[64];
	int r = FY_EPROTO, i;

	if (s->state != FY_SCRAM_SENT_CHALLENGE)
		goto out;
	if (len >= FY_SCRAM_MSG_MAX || memchr(cfinal, '\0', len) != NULL)
		goto out;
	if (!attr(&p, end, 'c', &cb, &cblen) ||
	    !attr(&p, end, 'r', &nonce, &nlen))
		goto out;
	noproof = (size_t)(p - cfinal) - 1;	/* without ",p=" */
	if (!attr(&p, end, 'p', &pr, &prlen) || p != end)
		goto out;
	if (cblen != 4 || memcmp(cb, GS2_B64, 4) != 0)
		goto out;
	/* The whole combined nonce, or this is not our session. */
	if (nlen != strlen(s->nonce) || memcmp(nonce, s->nonce, nlen) != 0)
		goto out;
	if (fy_b64_decode(proof, sizeof(proof), pr, prlen) !=
	    FY_SCRAM_KEY_LEN)
		goto out;
	if (cat(s->auth, sizeof(s->auth), ",", 1) ||
	    cat(s->auth, sizeof(s->auth), cfinal, noproof))
		goto out;
	r = FY_ENOMEM;
	if (sign(s->v.stored_key, s->auth, sig))
		goto out;
	for (i = 0; i < FY_SCRAM_KEY_LEN; i++)
		proof[i] ^= sig[i];		/* now ClientKey */
	if (SHA256(proof, sizeof(proof), stored) == NULL)
		goto out;
	/* Same work for a fake verifier as for a real one: both end here,
	 * and the comparison takes the same time whatever the bytes. */
	if (CRYPTO_memcmp(stored, s->v.stored_key, sizeof(stored)) != 0) {
		r = FY_EAUTH;
		goto out;
	}
	if (sign(s->v.server_key, s->auth, sig))
		goto out;
	fy_b64_encode(enc, sizeof(enc), sig, sizeof(sig));
	snprintf(out, FY_SCRAM_MSG_MAX, "v=%s", enc);
	r = FY_OK;
out:
	OPENSSL_cleanse(proof, sizeof(proof));
	fy_scram_server_clear(s);
	s->state = r == FY_OK ? FY_SCRAM_DONE : FY_SCRAM_FAILED;
	return r;
}

void
fy_scram_server_clear(struct fy_scram_server *s)
{
	OPENSSL_cleanse(&s->v, sizeof(s->v));
	s->state = FY_SCRAM_FAILED;
}
