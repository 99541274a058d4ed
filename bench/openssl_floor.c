/* The floor under tinymta's idle memory: what a process that does nothing but
 * OpenSSL's share of tinymta's start-up holds. bench/memory builds it against the
 * same system OpenSSL and measures it beside tinymta, the same way.
 *
 *     openssl_floor [--legacy] CERT KEY
 *
 * Makes one TLS server context with the certificate and key (as tinymta's listeners
 * share one), after loading OpenSSL 3's default and legacy providers when --legacy is
 * given (tinymta's medium and compat profiles offer SEED, which only the legacy
 * provider has), prints "ready" and waits for a signal. */
#include <openssl/provider.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int arg = 1;
    if (argc > 1 && strcmp(argv[1], "--legacy") == 0) {
        if (!OSSL_PROVIDER_load(NULL, "default") || !OSSL_PROVIDER_load(NULL, "legacy")) {
            fprintf(stderr, "openssl_floor: cannot load the legacy provider\n");
            return 1;
        }
        arg = 2;
    }
    if (argc != arg + 2) {
        fprintf(stderr, "usage: openssl_floor [--legacy] CERT KEY\n");
        return 64;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL || SSL_CTX_use_certificate_chain_file(ctx, argv[arg]) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, argv[arg + 1], SSL_FILETYPE_PEM) != 1) {
        fprintf(stderr, "openssl_floor: cannot make a server context with %s and %s\n",
                argv[arg], argv[arg + 1]);
        return 1;
    }
    printf("ready\n");
    fflush(stdout);
    for (;;)
        pause();
}
