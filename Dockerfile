# The project-http image: one static binary on an empty base.
#
# Nothing is pulled: the binary is built on the host (glibc, statically
# linked) and copied in. Build it all with:
#
#     scripts/build-image.sh [TAG]          # default project-http:latest
#
# The build context scripts/build-image.sh prepares holds:
#   project-http   the static binary
#   static/        an empty directory (becomes /srv/static, owned by UID 101)
FROM scratch
COPY project-http /project-http
COPY --chown=101:101 static/ /srv/static/
USER 101:101
ENV PROJECT_HTTP_ROOT=/srv/static \
    PROJECT_HTTP_LISTEN=0.0.0.0:8080 \
    PROJECT_HTTP_ADMIN_LISTEN=0.0.0.0:9080
EXPOSE 8080 9080
VOLUME /srv/static
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 CMD ["/project-http", "healthcheck"]
ENTRYPOINT ["/project-http"]
CMD ["serve"]
