"""Plans: sequences of collectives, their figures, file format, tables and simulator."""
