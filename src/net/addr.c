/* SPDX-License-Identifier: ISC */
/* Address helpers; see addr.h. Blocking name resolution: startup and reload only. */
#include "net/addr.h"
#include "core/str.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/un.h>

int lv_addr_resolve(const char *host, int port, lv_addr_t *out, lv_err_t *err)
{
	memset(out, 0, sizeof(*out));
	if (host[0] == '/') {
		struct sockaddr_un *un = (struct sockaddr_un *)&out->ss;
		un->sun_family = AF_UNIX;
		int n = snprintf(un->sun_path, sizeof(un->sun_path), "%s/.s.PGSQL.%d", host, port);
		if (n < 0 || (size_t)n >= sizeof(un->sun_path))
			return lv_err_set(err, LV_EINVAL, "unix socket path too long: %s", host);
		out->len = sizeof(*un);
		return 0;
	}
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;
	char portstr[16];
	snprintf(portstr, sizeof(portstr), "%d", port);
	int rc = getaddrinfo(host, portstr, &hints, &res);
	if (rc != 0 || !res)
		return lv_err_set(err, LV_EINVAL, "could not resolve \"%s\": %s", host, gai_strerror(rc));
	memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
	out->len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

int lv_addr_parse(const char *spec, lv_addr_t *out, lv_err_t *err)
{
	char host[256];
	const char *colon;
	if (spec[0] == '[') {
		const char *end = strchr(spec, ']');
		if (!end || end[1] != ':')
			return lv_err_set(err, LV_EINVAL, "invalid address \"%s\"", spec);
		size_t n = (size_t)(end - spec - 1);
		if (n >= sizeof(host))
			return lv_err_set(err, LV_EINVAL, "invalid address \"%s\"", spec);
		memcpy(host, spec + 1, n);
		host[n] = '\0';
		colon = end + 1;
	} else {
		colon = strrchr(spec, ':');
		if (!colon)
			return lv_err_set(err, LV_EINVAL, "invalid address \"%s\": expected host:port", spec);
		size_t n = (size_t)(colon - spec);
		if (n >= sizeof(host))
			return lv_err_set(err, LV_EINVAL, "invalid address \"%s\"", spec);
		memcpy(host, spec, n);
		host[n] = '\0';
	}
	char *endp;
	long port = strtol(colon + 1, &endp, 10);
	if (*endp || port < 1 || port > 65535)
		return lv_err_set(err, LV_EINVAL, "invalid port in \"%s\"", spec);
	if (!host[0] || strcmp(host, "*") == 0)
		strcpy(host, "0.0.0.0");
	return lv_addr_resolve(host, (int)port, out, err);
}

int lv_addr_format(const struct sockaddr *sa, char *buf, size_t cap)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in->sin_addr, buf, (socklen_t)cap);
		return ntohs(in->sin_port);
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, buf, (socklen_t)cap);
		return ntohs(in6->sin6_port);
	}
	if (!lv_strlcpy(buf, "unix", cap) && cap)
		buf[0] = '\0';
	return 0;
}
