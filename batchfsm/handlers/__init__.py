"""What each state owes: recovery handlers run from the outbox."""
