/*
 * key-request-native.c: an RSA key pair and a PKCS#10 certificate signing request made on the board with
 * mbedTLS, so the private key never leaves it.
 *
 *   generate(subject, bits) -> { keyDer, csrDer }
 *     keyDer: the private key as PKCS#8 PrivateKeyInfo DER (RFC 5208), the form Moddable's TLS client key and
 *             the firmware's key-match expect (mbedTLS writes PKCS#1 RSAPrivateKey, RFC 8017 A.1.2; wrapped here).
 *     csrDer: CertificationRequest DER (RFC 2986), signed with SHA-256 and PKCS#1 v1.5 by the new key.
 *
 * Builds against mbedTLS 2.28 (Debian 12's libmbedtls-dev, the Linux simulator) and 3.x (ESP-IDF 5's mbedtls
 * component). Every call used here has the same signature in both: mbedtls_pk_setup, mbedtls_rsa_gen_key,
 * mbedtls_pk_write_key_der, mbedtls_x509write_csr_* (the writer takes f_rng/p_rng in both), the asn1write helpers.
 * What differs is guarded below: PSA must be initialised in 3.x when MBEDTLS_USE_PSA_CRYPTO signs through PSA.
 *
 * Entropy: mbedtls_entropy_context with its default sources (Linux: getrandom / /dev/urandom; ESP-IDF:
 * MBEDTLS_ENTROPY_HARDWARE_ALT, esp_fill_random, a true RNG only while Wi-Fi/BT RF is on or the bootloader's
 * entropy source is enabled) feeding CTR_DRBG.
 *
 * No XS call is made while mbedTLS holds memory: the arguments are read and checked first (a bad argument throws
 * before anything is allocated), and the results are copied into JS ArrayBuffers only after the key's C buffers
 * are ready; an exception while copying frees and zeroizes them before it is rethrown. The private key's C copies
 * are zeroized (mbedtls_platform_zeroize; mbedtls_pk_free and mbedtls_ctr_drbg_free zeroize their own state).
 * The ArrayBuffer handed to JS is the caller's to wipe once it is stored.
 */

#include "xsPlatform.h"
#include "xsmc.h"
#include "mc.xs.h"			// for xsID_ values

#include <string.h>

#include "mbedtls/asn1write.h"
#include "mbedtls/ctr_drbg.h"
#include "mbedtls/entropy.h"
#include "mbedtls/oid.h"
#include "mbedtls/pk.h"
#include "mbedtls/platform_util.h"
#include "mbedtls/rsa.h"
#include "mbedtls/x509_csr.h"
#if defined(MBEDTLS_USE_PSA_CRYPTO)
#include "psa/crypto.h"
#endif

#if !defined(MBEDTLS_GENPRIME) || !defined(MBEDTLS_X509_CSR_WRITE_C) || !defined(MBEDTLS_PK_WRITE_C) || !defined(MBEDTLS_CTR_DRBG_C) || !defined(MBEDTLS_ENTROPY_C)
#error "key-request needs mbedTLS with MBEDTLS_GENPRIME, MBEDTLS_X509_CSR_WRITE_C, MBEDTLS_PK_WRITE_C, MBEDTLS_CTR_DRBG_C and MBEDTLS_ENTROPY_C"
#endif

#define KEY_REQUEST_SUBJECT_MAX 256
#define KEY_REQUEST_EXPONENT 65537
#define KEY_REQUEST_CSR_BUFFER 4096

static const unsigned char kPersonalization[] = "electrolyser key-request";

typedef struct {
	mbedtls_entropy_context entropy;
	mbedtls_ctr_drbg_context drbg;
	mbedtls_pk_context pk;
	mbedtls_x509write_csr csr;
	unsigned char *keyBuffer;
	size_t keyBufferSize;
	unsigned char *csrBuffer;
	const unsigned char *keyDer;
	size_t keyLength;
	const unsigned char *csrDer;
	size_t csrLength;
} KeyRequestRecord;

static void keyRequestInit(KeyRequestRecord *kr)
{
	c_memset(kr, 0, sizeof(*kr));
	mbedtls_entropy_init(&kr->entropy);
	mbedtls_ctr_drbg_init(&kr->drbg);
	mbedtls_pk_init(&kr->pk);
	mbedtls_x509write_csr_init(&kr->csr);
}

static void keyRequestFree(KeyRequestRecord *kr)
{
	if (kr->keyBuffer) {
		mbedtls_platform_zeroize(kr->keyBuffer, kr->keyBufferSize);
		c_free(kr->keyBuffer);
		kr->keyBuffer = NULL;
	}
	if (kr->csrBuffer) {
		c_free(kr->csrBuffer);
		kr->csrBuffer = NULL;
	}
	mbedtls_x509write_csr_free(&kr->csr);
	mbedtls_pk_free(&kr->pk);
	mbedtls_ctr_drbg_free(&kr->drbg);
	mbedtls_entropy_free(&kr->entropy);
}

/*
 * PrivateKeyInfo ::= SEQUENCE { version INTEGER (0), privateKeyAlgorithm AlgorithmIdentifier (rsaEncryption,
 * NULL), privateKey OCTET STRING (RSAPrivateKey) }. mbedTLS writes DER backwards from the end of the buffer, so
 * the PKCS#1 key is written first and the PKCS#8 header in front of it. Returns the length, or an mbedTLS error.
 */
static int keyRequestWritePkcs8(KeyRequestRecord *kr)
{
	unsigned char *start = kr->keyBuffer;
	unsigned char *c;
	size_t len = 0;
	int ret = mbedtls_pk_write_key_der(&kr->pk, start, kr->keyBufferSize);
	if (ret < 0)
		return ret;
	len = (size_t)ret;
	c = start + kr->keyBufferSize - len;
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(&c, start, len));
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_tag(&c, start, MBEDTLS_ASN1_OCTET_STRING));
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_algorithm_identifier(&c, start, MBEDTLS_OID_PKCS1_RSA, MBEDTLS_OID_SIZE(MBEDTLS_OID_PKCS1_RSA), 0));
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_int(&c, start, 0));
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_len(&c, start, len));
	MBEDTLS_ASN1_CHK_ADD(len, mbedtls_asn1_write_tag(&c, start, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE));
	kr->keyDer = c;
	kr->keyLength = len;
	return (int)len;
}

/* Returns 0, or an mbedTLS error code; *step names the call that failed. No XS call in here. */
static int keyRequestRun(KeyRequestRecord *kr, const char *subject, int bits, const char **step)
{
	int ret;

#if defined(MBEDTLS_USE_PSA_CRYPTO)
	*step = "psa_crypto_init";
	if (PSA_SUCCESS != psa_crypto_init())
		return -1;
#endif
	/* The subject first: a name mbedTLS cannot parse fails before seconds of key generation. */
	*step = "x509write_csr_set_subject_name";
	ret = mbedtls_x509write_csr_set_subject_name(&kr->csr, subject);
	if (ret) return ret;

	*step = "ctr_drbg_seed";
	ret = mbedtls_ctr_drbg_seed(&kr->drbg, mbedtls_entropy_func, &kr->entropy, kPersonalization, sizeof(kPersonalization) - 1);
	if (ret) return ret;

	*step = "pk_setup";
	ret = mbedtls_pk_setup(&kr->pk, mbedtls_pk_info_from_type(MBEDTLS_PK_RSA));
	if (ret) return ret;

	*step = "rsa_gen_key";
	ret = mbedtls_rsa_gen_key(mbedtls_pk_rsa(kr->pk), mbedtls_ctr_drbg_random, &kr->drbg, (unsigned int)bits, KEY_REQUEST_EXPONENT);
	if (ret) return ret;

	*step = "allocating buffers";
	/* RSAPrivateKey holds n, d (bits/8 each) and p, q, dp, dq, qinv (bits/16 each) plus headers. */
	kr->keyBufferSize = (size_t)(bits / 8) * 5 + 128;
	kr->keyBuffer = c_malloc(kr->keyBufferSize);
	kr->csrBuffer = c_malloc(KEY_REQUEST_CSR_BUFFER);
	if (!kr->keyBuffer || !kr->csrBuffer)
		return MBEDTLS_ERR_PK_ALLOC_FAILED;

	*step = "pk_write_key_der";
	ret = keyRequestWritePkcs8(kr);
	if (ret < 0) return ret;

	mbedtls_x509write_csr_set_md_alg(&kr->csr, MBEDTLS_MD_SHA256);
	mbedtls_x509write_csr_set_key(&kr->csr, &kr->pk);

	*step = "x509write_csr_der";
	ret = mbedtls_x509write_csr_der(&kr->csr, kr->csrBuffer, KEY_REQUEST_CSR_BUFFER, mbedtls_ctr_drbg_random, &kr->drbg);
	if (ret < 0) return ret;
	kr->csrLength = (size_t)ret;
	kr->csrDer = kr->csrBuffer + KEY_REQUEST_CSR_BUFFER - kr->csrLength;
	return 0;
}

void xs_keyrequest_generate(xsMachine *the)
{
	char subject[KEY_REQUEST_SUBJECT_MAX + 1];
	const char *step = "";
	KeyRequestRecord kr;
	int bits, ret;

	/* Arguments first: these throw before anything is allocated. */
	if (xsmcArgc < 2)
		xsTypeError("key-request: generate(subject, bits)");
	if (xsStringType != xsmcTypeOf(xsArg(0)))
		xsTypeError("key-request: subject must be a string");
	{
		const char *s = xsmcToString(xsArg(0));
		size_t length = c_strlen(s);
		if ((0 == length) || (length > KEY_REQUEST_SUBJECT_MAX))
			xsRangeError("key-request: subject must be 1 to %d bytes", KEY_REQUEST_SUBJECT_MAX);
		c_memcpy(subject, s, length + 1);
	}
	if ((xsIntegerType != xsmcTypeOf(xsArg(1))) && (xsNumberType != xsmcTypeOf(xsArg(1))))
		xsTypeError("key-request: bits must be a number");
	bits = xsmcToInteger(xsArg(1));
	if ((2048 != bits) && (3072 != bits) && (4096 != bits))
		xsRangeError("key-request: bits must be 2048, 3072 or 4096");

	keyRequestInit(&kr);
	ret = keyRequestRun(&kr, subject, bits, &step);
	if (ret) {
		keyRequestFree(&kr);
		if (MBEDTLS_ERR_X509_INVALID_NAME == ret || MBEDTLS_ERR_X509_UNKNOWN_OID == ret)
			xsRangeError("key-request: subject not understood by mbedTLS (%s: -0x%04x)", step, (unsigned int)-ret);
		xsUnknownError("key-request: %s failed: -0x%04x", step, (unsigned int)-ret);
	}

	xsTry {
		xsmcVars(1);
		xsmcSetNewObject(xsResult);
		xsmcSetArrayBuffer(xsVar(0), (void *)kr.keyDer, kr.keyLength);
		xsmcSet(xsResult, xsID_keyDer, xsVar(0));
		xsmcSetArrayBuffer(xsVar(0), (void *)kr.csrDer, kr.csrLength);
		xsmcSet(xsResult, xsID_csrDer, xsVar(0));
	}
	xsCatch {
		keyRequestFree(&kr);
		xsThrow(xsException);
	}
	keyRequestFree(&kr);
}
