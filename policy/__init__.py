"""headway.policy"""
