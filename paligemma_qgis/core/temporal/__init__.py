"""Water over time: water maps of dated runs, change between two dates, occurrence."""
