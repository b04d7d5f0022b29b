"""The dashboards (`/api/dashboard/*`): the worker fleet and dispatch, system health, user experience."""
