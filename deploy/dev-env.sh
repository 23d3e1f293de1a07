# Sourced by run.sh and demo.sh: the settings a developer's machine runs with.
# The JWT secret here signs the demo's tokens, the service secret signs commands and ticks;
# production sets its own BACKOFFICE_JWT_SECRET and BACKOFFICE_SERVICE_SECRET.
export BACKOFFICE_JWT_SECRET="${BACKOFFICE_JWT_SECRET:-dev-only-secret-change-me-0123456789abcdef}"
export BACKOFFICE_SERVICE_SECRET="${BACKOFFICE_SERVICE_SECRET:-dev-only-service-secret-change-me-0123456789}"
