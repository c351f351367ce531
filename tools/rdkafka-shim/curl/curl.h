/*
 * Empty stand-in for libcurl's header, found through C_INCLUDE_PATH (.cargo/config.toml).
 *
 * librdkafka 2.12.1 (rdkafka-sys 4.10) includes <curl/curl.h> in rdkafka_conf.c under
 * `#ifdef WITH_OAUTHBEARER_OIDC`, but its CMake config.h always defines that macro (to 0 when
 * OIDC is off, as in our build: no curl, no SSL). Every other use is `#if`, so nothing from curl
 * is referenced; only the include must resolve. Without this the build needs libcurl's
 * development headers installed for no reason.
 */
