"""The map (`/api/map/*`): points, grid statistics from the pre-aggregated grid, an item's log."""
