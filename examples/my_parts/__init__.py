"""Your own parts for ssd, kept in your own folder: ssd is never edited (see the README of ssd, "Add your own")."""
